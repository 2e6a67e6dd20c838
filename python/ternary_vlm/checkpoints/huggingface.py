"""Hugging Face safetensors checkpoints (single file or sharded index) -> numpy, without torch.

Reads through the safetensors library (numpy framework: memory-mapped, bf16 as ml_dtypes.bfloat16),
which also rejects a file whose header promises more bytes than it holds: reported as truncated.
"""

from __future__ import annotations

import json
import os

import numpy as np
from safetensors import SafetensorError, safe_open

from ternary_vlm.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class SafetensorsFile:
    """One .safetensors file: keys(), shape(key), get(key) -> np.ndarray."""

    def __init__(self, path: str):
        self.path = path
        name = os.path.basename(path)
        try:
            self._file = safe_open(path, framework="numpy")
        except SafetensorError as e:
            reason = str(e)
            if "incomplete" in reason or "too small" in reason or "not fully covered" in reason:
                raise CheckpointError(f"{name}: truncated safetensors file ({reason})") from None
            raise CheckpointError(f"{name}: not a safetensors file ({reason})") from None
        self._keys = list(self._file.keys())

    def keys(self):
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._file.get_slice(key).get_shape())

    def get(self, key: str) -> np.ndarray:
        try:
            return self._file.get_tensor(key)
        except (SafetensorError, TypeError, ValueError) as e:
            raise CheckpointError(f"{os.path.basename(self.path)}: cannot read tensor {key!r} ({e})") from None


class SafetensorsCheckpoint:
    """All tensors of a model directory: model.safetensors, or the shards named by the index."""

    def __init__(self, directory: str):
        single, index = os.path.join(directory, SINGLE_FILE), os.path.join(directory, INDEX_FILE)
        self._where: dict[str, SafetensorsFile] = {}
        if os.path.exists(index):
            try:
                with open(index) as f:
                    weight_map = json.load(f)["weight_map"]
            except (OSError, ValueError, KeyError) as e:
                raise CheckpointError(f"{INDEX_FILE}: unreadable index ({e})") from None
            files = {}
            for key, shard in weight_map.items():
                if shard not in files:
                    shard_path = os.path.join(directory, shard)
                    if not os.path.exists(shard_path):
                        raise CheckpointError(f"{INDEX_FILE} names shard {shard}, which is missing")
                    files[shard] = SafetensorsFile(shard_path)
                if key not in files[shard].keys():
                    raise CheckpointError(f"{INDEX_FILE} puts tensor {key!r} in {shard}, which lacks it")
                self._where[key] = files[shard]
        elif os.path.exists(single):
            st = SafetensorsFile(single)
            self._where = {key: st for key in st.keys()}
        else:
            others = [n for n in ("pytorch_model.bin", "model.bin", "tf_model.h5") if
                      os.path.exists(os.path.join(directory, n))]
            extra = f" ({others[0]} is not supported: save the model as safetensors)" if others else ""
            raise CheckpointError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}{extra}")

    def keys(self):
        return self._where.keys()

    def __contains__(self, key):
        return key in self._where

    def shape(self, key):
        return self._where[key].shape(key)

    def get(self, key):
        return self._where[key].get(key)
