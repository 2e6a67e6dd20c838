"""The user's own training data (`--data=PATH`), read and checked in full before any training starts.

Accepted:
  a .txt / .md file, or a folder of them (recursively)    plain text; paragraphs (blank-line separated) are
                                                          the documents
  a .jsonl file                                           one JSON object a line: {"text": ...} for a language
                                                          model; {"image": path, "text" | "messages": ...} for a
                                                          VLM (image paths relative to the file)
  a folder written by datasets' save_to_disk              the same fields as JSONL; a DatasetDict's
                                                          "validation" (or "test") split is the held-out set

Held-out split: unless the data names one, every document whose content hash (text, messages, image bytes) falls in
the lowest `heldout_percent` of the hash range is held out (at least one). Identical documents hash alike, so a text
repeated in the data can never be on both sides, and the split depends neither on the order of files or lines nor on
where the data folder is.
Any problem (missing path, empty data, bytes that are not UTF-8, invalid JSON, a missing or non-text field, an
unreadable image) raises DataError with one line naming the file (and line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

from ternary_vlm.errors import TernaryVLMError

TEXT_SUFFIXES = (".txt", ".md")


class DataError(TernaryVLMError):
    pass


@dataclasses.dataclass(frozen=True)
class Document:
    text: str | None                 # plain text, or the answer text of an image example
    source: str                      # "file:line" (or "file") for messages
    image: str | None = None         # absolute path (VLM examples)
    messages: tuple | None = None    # chat turns [{"role", "content"}] (VLM examples)

    def key(self) -> str:
        # The image by its bytes, not its path: the split must not change when the data folder moves (and a test
        # in a fresh temporary folder must get the same split every run).
        image = hashlib.sha256(open(self.image, "rb").read()).hexdigest() if self.image else None
        return json.dumps([self.text, image, self.messages], sort_keys=True, default=str)


@dataclasses.dataclass(frozen=True)
class Dataset:
    train: list[Document]
    heldout: list[Document]


def read_text(path: str) -> str:
    """A UTF-8 text file, or DataError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _text_documents(path: str) -> list[Document]:
    text = read_text(path)
    docs, line = [], 1
    for para in re.split(r"(\n\s*\n)", text):
        if para.strip() and not re.fullmatch(r"\n\s*\n", para):
            docs.append(Document(para.strip(), f"{path}:{line}"))
        line += para.count("\n")
    if not docs:
        raise DataError(f"{path}: no text")
    return docs


def _example(row: dict, where: str, base: str, vlm: bool) -> Document:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    text, messages = row.get("text"), row.get("messages")
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: \"text\" is {type(text).__name__}, not a string")
    if not vlm:
        if not text:
            raise DataError(f"{where}: no \"text\" field (a language model trains on {{\"text\": ...}})")
        return Document(text, where)
    image = row.get("image")
    if not isinstance(image, str) or not image:
        raise DataError(f"{where}: no \"image\" field (a VLM trains on {{\"image\": path, \"text\" | \"messages\"}})")
    if not text and not messages:
        raise DataError(f"{where}: neither \"text\" nor \"messages\"")
    if messages is not None and not (isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)):
        raise DataError(f"{where}: \"messages\" must be a list of {{\"role\": str, \"content\": str}}")
    image = image if os.path.isabs(image) else os.path.join(base, image)
    try:
        from PIL import Image
        with Image.open(image) as im:
            im.verify()
    except (OSError, SyntaxError) as e:
        raise DataError(f"{where}: unreadable image {image} ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                        ) from None
    return Document(text or None, where, image, tuple(messages) if messages else None)


def _jsonl_documents(path: str, vlm: bool) -> list[Document]:
    docs = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
        docs.append(_example(row, f"{path}:{n}", os.path.dirname(path), vlm))
    if not docs:
        raise DataError(f"{path}: no examples")
    return docs


def _is_saved_dataset(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _saved_dataset(path: str, vlm: bool) -> tuple[list[Document], list[Document] | None]:
    import datasets

    try:
        loaded = datasets.load_from_disk(path)
    except Exception as e:  # datasets raises several types for a damaged folder
        raise DataError(f"{path}: not a readable datasets folder ({str(e).splitlines()[0]})") from None

    def documents(split, name):
        docs = [_example(row, f"{path}[{name}]:{i}", path, vlm) for i, row in enumerate(split)]
        if not docs:
            raise DataError(f"{path}[{name}]: no examples")
        return docs

    if isinstance(loaded, datasets.DatasetDict):
        heldout = next((s for s in ("validation", "test") if s in loaded), None)
        train = [d for s in loaded if s != heldout for d in documents(loaded[s], s)]
        return train, documents(loaded[heldout], heldout) if heldout else None
    return documents(loaded, "train"), None


def _hash_fraction(doc: Document) -> float:
    return int.from_bytes(hashlib.sha256(doc.key().encode()).digest()[:8], "big") / 2 ** 64


def read(path: str, vlm: bool = False, heldout_percent: float = 5.0) -> Dataset:
    """All documents under `path`, checked, split into train and held-out (never overlapping)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or directory")
    heldout = None
    if os.path.isdir(path) and _is_saved_dataset(path):
        docs, heldout = _saved_dataset(path, vlm)
    elif os.path.isdir(path):
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(TEXT_SUFFIXES))
        if not files:
            raise DataError(f"{path}: no .txt or .md files")
        docs = [d for f in files for d in _read_documents(f, vlm)]
    else:
        docs = _read_documents(path, vlm)
    return split(docs, path, heldout_percent, heldout)


def split(docs: list[Document], what: str, heldout_percent: float = 5.0,
          heldout: list[Document] | None = None) -> Dataset:
    """Training and held-out documents: the given held-out set, else the lowest `heldout_percent` of content
    hashes (at least one distinct document); a document equal to a held-out one is never trained on."""
    if heldout is None:
        ranked = sorted({d.key(): _hash_fraction(d) for d in docs}.items(), key=lambda kv: kv[1])
        keys = {k for k, h in ranked if h < heldout_percent / 100} or {ranked[0][0]}
        heldout = [d for d in docs if d.key() in keys]
    else:
        keys = {d.key() for d in heldout}
    docs = [d for d in docs if d.key() not in keys]
    if not docs:
        raise DataError(f"{what}: too little data for a training and a held-out set "
                        f"({len(heldout)} document(s), all held out)")
    return Dataset(docs, heldout)


def _read_documents(path: str, vlm: bool) -> list[Document]:
    if path.endswith(".jsonl"):
        return _jsonl_documents(path, vlm)
    if path.endswith(TEXT_SUFFIXES):
        if vlm:
            raise DataError(f"{path}: a VLM trains on image + text examples (.jsonl or a datasets folder)")
        return _text_documents(path)
    raise DataError(f"{path}: unsupported data file (.txt, .md, .jsonl, or a datasets save_to_disk folder)")
