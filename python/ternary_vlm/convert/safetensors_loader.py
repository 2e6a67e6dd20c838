"""Hugging Face safetensors checkpoints (single file or sharded index) -> numpy, without torch.

A small reader of the documented format (8-byte little-endian header length, JSON header, raw data),
memory-mapped, with bf16 through ml_dtypes; it checks that the file holds every byte its header
describes, so a truncated download is reported as such.
"""

from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

from ternary_vlm.errors import CheckpointError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class SafetensorsFile:
    """One .safetensors file: keys(), shape(key), get(key) -> np.ndarray (a view into a memmap)."""

    def __init__(self, path: str):
        self.path = path
        size = os.path.getsize(path)
        name = os.path.basename(path)
        if size < 8:
            raise CheckpointError(f"{name}: truncated safetensors file ({size} bytes)")
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if 8 + n > size:
                raise CheckpointError(f"{name}: truncated safetensors file (header of {n} bytes, file has {size})")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckpointError(f"{name}: not a safetensors file (bad header: {e})") from None
        header.pop("__metadata__", None)
        self._infos = header
        end = max((info["data_offsets"][1] for info in header.values()), default=0)
        if 8 + n + end > size:
            raise CheckpointError(f"{name}: truncated safetensors file (needs {8 + n + end} bytes, has {size})")
        self._data = np.memmap(path, np.uint8, "r", offset=8 + n, shape=(end,)) if end else np.zeros(0, np.uint8)

    def keys(self):
        return self._infos.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._infos[key]["shape"])

    def get(self, key: str) -> np.ndarray:
        info = self._infos[key]
        if info["dtype"] not in _DTYPES:
            raise CheckpointError(f"{os.path.basename(self.path)}: tensor {key!r} has unsupported dtype "
                                  f"{info['dtype']}")
        start, stop = info["data_offsets"]
        return self._data[start:stop].view(_DTYPES[info["dtype"]]).reshape(info["shape"])


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
