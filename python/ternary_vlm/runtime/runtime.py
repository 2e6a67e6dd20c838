"""Generation with an exported .tflite (see export/exporter.py for its signatures) on LiteRT alone: no JAX, no TF.

    runtime = Runtime("model-ternary.tflite", num_threads=4)
    for token in runtime.generate(ids, pixel_values=pixels, max_new_tokens=64, stop_ids=[eos]):
        ...

The KV cache stays inside the interpreter (our KVCacheAttention ops' own memory, or resource variables in a
kv_cache=variables export), so a decode step is: set two scalars, invoke the decode subgraph, read the logits.
The token loop is models/sampling.py's, shared with the Flax Generator.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from typing import Iterator, Sequence

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.runtime import litert
from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.models.sampling import generate_tokens

METADATA_KEY = "ternary_vlm"  # JSON written by export: max_len, prefill_len, image_token_id, variant, ...


def read_metadata(content: bytes) -> dict:
    """The exporter's JSON metadata from the flatbuffer, without unpacking the weights."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise TernaryVLMError("not a .tflite file (no TFL3 identifier)")
    try:
        model = schema.Model.GetRootAsModel(content, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() is not None and entry.Name().decode() == METADATA_KEY:
                meta = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
                break
        else:
            raise TernaryVLMError(f"not a ternary_vlm export (no {METADATA_KEY!r} metadata)")
    # What the flatbuffers reader raises on offsets that point outside the file, and bad text or JSON.
    except (struct.error, IndexError, ValueError, TypeError, AttributeError) as e:
        raise TernaryVLMError(f"corrupt .tflite file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise TernaryVLMError(f"corrupt .tflite file ({METADATA_KEY!r} metadata is not a JSON object)")
    return meta


class _Signature:
    """One signature's subgraph, allocated once. The public SignatureRunner resizes and re-allocates on every
    call; this sets inputs, invokes and reads outputs only."""

    def __init__(self, interp, key: str):
        self._wrapper = interp._interpreter  # what SignatureRunner itself drives
        sig = interp._get_full_signature_list()[key]
        self._inputs, self._outputs = sig["inputs"], sig["outputs"]
        self._index = self._wrapper.GetSubgraphIndexFromSignature(key)
        self._wrapper.AllocateTensors(self._index)

    def __call__(self, **inputs) -> dict:
        for name, value in inputs.items():
            self._wrapper.SetTensor(self._inputs[name], value, self._index)
        self._wrapper.Invoke(self._index)
        return {name: self._wrapper.GetTensor(i, self._index) for name, i in self._outputs.items()}


class Runtime:
    def __init__(self, model_path: str, num_threads: int = 1, xnnpack: bool | None = None):
        """model_path: a .tflite export, or a directory holding exactly one (e.g. a ternarize output).
        xnnpack: apply LiteRT's XNNPACK delegate; None follows the export's metadata (export/variants.py)."""
        if os.path.isdir(model_path):
            found = sorted(f for f in os.listdir(model_path) if f.endswith(".tflite"))
            if len(found) != 1:
                raise TernaryVLMError(f"{model_path}: expected one .tflite file, found {len(found)}"
                                      + (f" ({', '.join(found)})" if found else ""))
            model_path = os.path.join(model_path, found[0])
        # The metadata through a read-only mapping, and the model by path: LiteRT maps the file too, so weights
        # stay file pages, which our ops hand back once they hold their own re-packed copy (matmul_op.cc).
        try:
            with open(model_path, "rb") as f:
                if os.fstat(f.fileno()).st_size < 8:  # too short to map or to be a .tflite: read_metadata says so
                    self.meta = read_metadata(f.read())
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as content:
                    self.meta = read_metadata(content)
        except OSError as e:
            raise TernaryVLMError(f"cannot read {model_path}: {e.strerror}") from None
        try:
            # Only a model with custom ops needs our library (exports before the key existed all do).
            if xnnpack is None:
                xnnpack = bool(self.meta.get("xnnpack", True))
            self.interpreter = litert.interpreter(model_path=model_path, num_threads=num_threads, xnnpack=xnnpack,
                                                  ops=bool(self.meta.get("custom_ops", True)))
        except (RuntimeError, ValueError) as e:
            raise TernaryVLMError(f"{model_path}: {e}") from None
        keys = self.interpreter.get_signature_list()
        self.is_vlm = "encode_image" in keys
        self._prefill = _Signature(self.interpreter, "prefill")
        self._decode = _Signature(self.interpreter, "decode")
        self._reset = _Signature(self.interpreter, "reset")
        self._encode = _Signature(self.interpreter, "encode_image") if self.is_vlm else None
        self.max_len, self.prefill_len = self.meta["max_len"], self.meta["prefill_len"]

    def image_features(self, pixel_values: np.ndarray) -> np.ndarray:
        """[tiles, C, H, W] -> [tiles * image_seq_len, D], one encode_image call per tile."""
        if self._encode is None:
            raise TernaryVLMError("an image was given but the model is text-only")
        tiles = np.asarray(pixel_values, np.float32)
        return np.concatenate([self._encode(pixel_values=tiles[i:i + 1])["image_features"]
                               for i in range(len(tiles))])

    def prefill(self, ids: Sequence[int], image_features: np.ndarray | None = None) -> np.ndarray:
        """Logits [1, vocab] after the prompt; the cache now holds it."""
        n = len(ids)
        if not 0 < n <= self.prefill_len:
            raise TernaryVLMError(f"the prompt has {n} tokens; this export takes 1..{self.prefill_len} "
                                  f"(re-export with a larger --prefill_len)")
        padded = np.zeros((1, self.prefill_len), np.int32)
        padded[0, :n] = ids
        inputs = {"ids": padded, "length": np.asarray(n, np.int32)}
        if self.is_vlm:
            features = np.zeros((self.prefill_len, self.meta["hidden_size"]), np.float32)
            if image_features is not None:
                features[:len(image_features)] = image_features
            inputs["image_features"] = features
        return self._prefill(**inputs)["logits"]

    def decode(self, token: int, position: int) -> np.ndarray:
        return self._decode(token=np.asarray([[token]], np.int32),
                            position=np.asarray(position, np.int32))["logits"]

    def reset(self) -> None:
        self._reset()

    def generate(self, ids: Sequence[int], *, pixel_values=None, max_new_tokens: int = 64,
                 temperature: float = 0.0, seed: int = 0, stop_ids: Sequence[int] = ()) -> Iterator[int]:
        """Yields new token ids (stops after a stop id, which is yielded, max_new_tokens, or a full cache)."""
        ids = list(ids)
        features = None
        if pixel_values is not None:
            features = self.image_features(pixel_values)
            n_image = sum(1 for i in ids if i == self.meta["image_token_id"])
            if n_image != features.shape[0]:
                raise TernaryVLMError(f"{n_image} image tokens in the prompt but {features.shape[0]} image "
                                      f"features")
        self.reset()
        return generate_tokens(lambda: self.prefill(ids, features), self.decode, len(ids), self.max_len,
                               max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop_ids=stop_ids)
