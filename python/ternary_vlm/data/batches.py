"""Token batches for training and evaluation: chat-formatted scene examples (caption or QA, loss on
the assistant's answer) and windows of real text (loss on every token). Batches are pure functions
of (seed, step), so a resumed run sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from ternary_vlm.checkpoints import processing
from ternary_vlm.data import scenes, text

CAPTION_PROMPT = "Describe the image."
END_OF_TURN = "<end_of_utterance>"  # SmolVLM's, for a tokenizer that names no eos token


@dataclasses.dataclass
class Batch:
    ids: np.ndarray          # int32 [B, T]: inputs
    labels: np.ndarray       # int32 [B, T]: next token at each position
    mask: np.ndarray         # float32 [B, T]: 1 where the loss counts
    pixel_values: np.ndarray | None  # float32 [images, C, H, W], one per row that has an image

    def arrays(self) -> dict:
        out = {"ids": self.ids, "labels": self.labels, "mask": self.mask}
        if self.pixel_values is not None:
            out["pixel_values"] = self.pixel_values
        return out


class Batcher:
    def __init__(self, tokenizer, image_processor, vlm_config, max_len: int, seed: int = 0):
        self.tokenizer, self.image_processor, self.vlm_config = tokenizer, image_processor, vlm_config
        self.max_len, self.seed = max_len, seed
        self.pad_id = tokenizer.token_to_id("<|endoftext|>") or 0
        self.end_of_turn = tokenizer.eos_token or END_OF_TURN
        self._text_ids: dict[str, np.ndarray] = {}

    # -- rows ------------------------------------------------------------------------------------------
    def scene_row(self, example: scenes.Example, task: str):
        prompt = CAPTION_PROMPT if task == "caption" else example.question
        answer = example.caption if task == "caption" else example.answer
        return self.image_row(Image.fromarray(example.image), prompt, answer)

    def image_row(self, image: Image.Image, prompt: str, answer: str):
        """(prompt ids with the image's tokens, answer ids ending the turn, pixel values)."""
        prompt_ids, pixels = processing.build_inputs(self.tokenizer, prompt, image=image,
                                                     image_processor=self.image_processor, vlm_config=self.vlm_config)
        # The answer follows the generation prompt as the chat template leaves it: "Assistant:" (SmolVLM) wants a
        # space, ChatML's "<|im_start|>assistant\n" (checkpoints/grafted_vlm.py) none.
        space = "" if self.tokenizer.decode(prompt_ids[-1:], skip_special_tokens=False)[-1:].isspace() else " "
        answer_ids = self.tokenizer.encode(space + answer + self.end_of_turn, add_special_tokens=False)
        return prompt_ids, answer_ids, pixels

    def document_row(self, doc):
        """A user example (data/user_data.Document): its text is a caption of the image; with messages, the
        first user turn is the prompt and the first assistant turn the answer."""
        prompt, answer = CAPTION_PROMPT, doc.text
        if doc.messages:
            prompt = next((m["content"] for m in doc.messages if m["role"] == "user"), CAPTION_PROMPT)
            answer = next((m["content"] for m in doc.messages if m["role"] == "assistant"), doc.text)
        with Image.open(doc.image) as im:
            return self.image_row(im.convert("RGB"), prompt, answer)

    def document_batch(self, docs) -> Batch:
        rows, pixels = [], []
        for doc in docs:
            p, a, px = self.document_row(doc)
            rows.append((p, a))
            pixels.append(px)
        ids, labels, mask = self._pack(rows)
        return Batch(ids, labels, mask, np.concatenate(pixels))

    def _pack(self, rows):
        b, t = len(rows), self.max_len
        ids = np.full((b, t + 1), self.pad_id, np.int32)
        mask = np.zeros((b, t + 1), np.float32)
        for r, (prompt, answer) in enumerate(rows):
            seq = (list(prompt) + list(answer))[: t + 1]
            if len(prompt) + len(answer) > t + 1:
                raise ValueError(f"example of {len(prompt) + len(answer)} tokens exceeds max_len {t} + 1")
            ids[r, : len(seq)] = seq
            mask[r, len(prompt): len(seq)] = 1.0
        # Position i predicts token i + 1: the mask moves with the labels.
        return ids[:, :-1], ids[:, 1:], mask[:, 1:]

    def text_ids(self, split: str) -> np.ndarray:
        if split not in self._text_ids:
            eos = self.tokenizer.encode(self.end_of_turn, add_special_tokens=False)
            ids = [i for p in text.split(split) for i in self.tokenizer.encode(p, add_special_tokens=False) + eos]
            self._text_ids[split] = np.asarray(ids, np.int32)
        return self._text_ids[split]

    # -- batches -------------------------------------------------------------------------------------
    def scene_batch(self, split: str, indices, task_of) -> Batch:
        rows, pixels = [], []
        for i in indices:
            e = scenes.example(self.seed, split, int(i), self.vlm_config.vision.image_size)
            p, a, px = self.scene_row(e, task_of(int(i)))
            rows.append((p, a))
            pixels.append(px)
        ids, labels, mask = self._pack(rows)
        return Batch(ids, labels, mask, np.concatenate(pixels))

    def text_batch(self, split: str, starts) -> Batch:
        return self._windows(self.text_ids(split), starts)

    def _windows(self, ids: np.ndarray, starts) -> Batch:
        window = np.stack([ids[s: s + self.max_len + 1] for s in starts])
        return Batch(window[:, :-1], window[:, 1:], np.ones(window[:, 1:].shape, np.float32), None)

    def train_batch(self, step: int, scene_rows: int, text_rows: int, text_ids: np.ndarray | None = None) -> Batch:
        """Mixed batch for a training step: scene rows (half captions, half QA) + windows of a token stream
        (`text_ids`; default: the pydoc train split)."""
        rng = np.random.default_rng([self.seed, 99, step])
        indices = rng.integers(0, 1 << 30, size=scene_rows)
        tasks = {int(i): ("caption" if k % 2 == 0 else "qa") for k, i in enumerate(indices)}
        batch = self.scene_batch("train", indices, tasks.__getitem__)
        if text_rows:
            ids = self.text_ids("train") if text_ids is None else text_ids
            t = self._windows(ids, rng.integers(0, len(ids) - self.max_len - 1, size=text_rows))
            batch = Batch(np.concatenate([batch.ids, t.ids]), np.concatenate([batch.labels, t.labels]),
                          np.concatenate([batch.mask, t.mask]), batch.pixel_values)
        return batch
