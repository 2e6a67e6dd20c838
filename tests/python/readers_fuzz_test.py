"""Fuzzing the readers of files a user hands us: GGUF and safetensors checkpoints (with config.json) and
the metadata of an exported .tflite. Hypothesis generates damaged versions of small valid files (truncated,
bytes overwritten, header fields set to hostile values: a tensor claiming 2^40 elements, overlapping or
out-of-file offsets, a NaN weight, a config with 10^9 layers) and each must either load or raise the
project's one-line error naming the problem, quickly: never another exception, a hang or a huge allocation.

Examples per property: FUZZ_EXAMPLES (default 60, derandomized so CI is reproducible); for a long run
  FUZZ_EXAMPLES=5000 tools/bazel test //tests/python:readers_fuzz_test --test_output=streamed
"""

import json
import os
import shutil
import struct
import tempfile

import numpy as np
from absl.testing import absltest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiny_checkpoints
from ternary_vlm import runtime
from ternary_vlm.export.tflite import builder
from ternary_vlm.export import tflite
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.errors import TernaryVLMError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=20_000, derandomize="FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], database=None)

# Hostile values for integer and other header fields.
HOSTILE = st.one_of(st.sampled_from([0, -1, 1, 2 ** 31 - 1, 2 ** 40, 10 ** 9, float("nan"), float("inf"),
                                     2.5, "", "x", None, [], [1, 2]]),
                    st.integers(-2 ** 63, 2 ** 63 - 1), st.text(max_size=8))


def write_gguf(path, fields: dict | None = None, dims: dict | None = None):
    """A tiny llama GGUF (2 layers, hidden 16, vocab 40) with metadata `fields` overriding the defaults
    (value None: left out) and tensor shapes `dims` overriding the true ones in the header."""
    import gguf

    hidden, ffn, layers, heads, kv, vocab = 16, 24, 2, 4, 2, 40
    meta = {"llama.context_length": 64, "llama.embedding_length": hidden, "llama.block_count": layers,
            "llama.feed_forward_length": ffn, "llama.attention.head_count": heads,
            "llama.attention.head_count_kv": kv, "llama.attention.layer_norm_rms_epsilon": 1e-5,
            "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": [chr(65 + i) for i in range(vocab)],
            "tokenizer.ggml.eos_token_id": 1}
    meta.update(fields or {})
    rng = np.random.default_rng(0)
    head_dim = hidden // heads
    shapes = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,)}
    for i in range(layers):
        shapes.update({f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
                       f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_k.weight": (kv * head_dim, hidden),
                       f"blk.{i}.attn_v.weight": (kv * head_dim, hidden),
                       f"blk.{i}.attn_output.weight": (hidden, hidden), f"blk.{i}.ffn_gate.weight": (ffn, hidden),
                       f"blk.{i}.ffn_up.weight": (ffn, hidden), f"blk.{i}.ffn_down.weight": (hidden, ffn)})
    writer = gguf.GGUFWriter(path, "llama")
    for key, value in meta.items():
        if key == "general.architecture" or value is None:
            continue
        writer.add_key_value(key, value, _gguf_type(value))
    for name, shape in shapes.items():
        array = rng.normal(size=shape).astype(np.float32)
        claimed = (dims or {}).get(name)
        if claimed is None:
            writer.add_tensor(name, array)
        else:  # a header that lies about the shape; the data stays what it was
            writer.add_tensor_info(name, claimed, np.dtype(np.float32), array.nbytes)
            writer.tensors[-1][name].tensor = array
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _gguf_type(value):
    import gguf

    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.INT64 if not 0 <= value < 2 ** 32 else gguf.GGUFValueType.UINT32
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    if isinstance(value, str):
        return gguf.GGUFValueType.STRING
    return gguf.GGUFValueType.ARRAY


class ReadersFuzzTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp()
        cls.gguf = os.path.join(cls.base, "tiny.gguf")
        write_gguf(cls.gguf)
        cls.hf = os.path.join(cls.base, "hf")
        tiny_checkpoints.make_llama(cls.hf)
        model = builder.ModelBuilder()
        x = model.tensor("x", [1, 4], np.float32)
        y = model.tensor("y", [1, 4], np.float32)
        model.op(0, [x, x], [y])  # ADD
        cls.tflite = tflite.add_metadata(model.build([x], [y]), runtime.METADATA_KEY,
                                                 json.dumps({"max_len": 8}).encode())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base)

    def _scratch(self):
        d = tempfile.mkdtemp(dir=self.base)
        self.addCleanup(shutil.rmtree, d)
        return d

    def assert_loads_or_one_line_error(self, path):
        try:
            load_model(path)
        except TernaryVLMError as e:
            message = str(e)
            self.assertNotIn("\n", message)
            self.assertNotEqual(message.strip(), "")
            return message
        return None

    # -- the valid files load (else the properties below would test only the error path) ----------------
    def test_seeds_load(self):
        self.assertIsNone(self.assert_loads_or_one_line_error(self.gguf))
        self.assertIsNone(self.assert_loads_or_one_line_error(self.hf))
        self.assertEqual(runtime.read_metadata(self.tflite), {"max_len": 8})

    # -- GGUF -----------------------------------------------------------------------------------------------
    @FUZZ
    @given(st.data())
    def test_gguf_bytes(self, data):
        content = bytearray(open(self.gguf, "rb").read())
        if data.draw(st.booleans()):
            content = content[:data.draw(st.integers(0, len(content) - 1))]
        else:  # the header and metadata: the first KiB holds every key and tensor record
            for _ in range(data.draw(st.integers(1, 8))):
                content[data.draw(st.integers(0, min(len(content), 1024) - 1))] = data.draw(st.integers(0, 255))
        path = os.path.join(self._scratch(), "m.gguf")
        open(path, "wb").write(bytes(content))
        self.assert_loads_or_one_line_error(path)

    @FUZZ
    @given(st.sampled_from(["llama.embedding_length", "llama.block_count", "llama.feed_forward_length",
                            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.context_length",
                            "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "tokenizer.ggml.model",
                            "tokenizer.ggml.tokens", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.merges",
                            "llama.attention.key_length", "general.architecture"]),
           st.one_of(st.none(), HOSTILE.filter(lambda v: v != [])))  # gguf-py cannot write an empty array
    def test_gguf_metadata(self, key, value):
        path = os.path.join(self._scratch(), "m.gguf")
        write_gguf(path, fields={key: value})
        self.assert_loads_or_one_line_error(path)

    @FUZZ
    @given(st.sampled_from(["token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"]),
           st.lists(st.sampled_from([0, 1, 3, 2 ** 20, 2 ** 40]), min_size=1, max_size=4))
    def test_gguf_tensor_shapes(self, name, claimed):
        path = os.path.join(self._scratch(), "m.gguf")
        write_gguf(path, dims={name: tuple(claimed)})
        message = self.assert_loads_or_one_line_error(path)
        self.assertIsNotNone(message)  # every claimed shape here is wrong (no true one has a size in it)

    # -- safetensors + config.json ---------------------------------------------------------------------------
    def _hf_copy(self):
        d = os.path.join(self._scratch(), "hf")
        shutil.copytree(self.hf, d)
        return d

    @FUZZ
    @given(st.data())
    def test_safetensors_header(self, data):
        d = self._hf_copy()
        path = os.path.join(d, "model.safetensors")
        content = open(path, "rb").read()
        (n,) = struct.unpack("<Q", content[:8])
        header, body = json.loads(content[8:8 + n]), content[8 + n:]
        name = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "truncate"]))
        if field == "dtype":
            header[name]["dtype"] = data.draw(st.sampled_from(["F16", "BF16", "I64", "U8", "F64", "X9", ""]))
        elif field == "shape":
            header[name]["shape"] = data.draw(st.lists(st.sampled_from([0, 1, 7, 2 ** 40, -1]), max_size=4))
        elif field == "data_offsets":  # overlapping, reversed, past the end of the file
            header[name]["data_offsets"] = sorted(data.draw(st.lists(
                st.integers(0, len(body) + 64), min_size=2, max_size=2)), reverse=data.draw(st.booleans()))
        elif field == "drop":
            del header[name]
        raw = json.dumps(header).encode()
        content = struct.pack("<Q", len(raw)) + raw + body
        if field == "truncate":
            content = content[:data.draw(st.integers(0, len(content) - 1))]
        open(path, "wb").write(content)
        message = self.assert_loads_or_one_line_error(d)
        if field in ("dtype", "shape", "drop", "truncate"):
            self.assertIsNotNone(message)

    @FUZZ
    @given(st.data())
    def test_non_finite_weight_is_named(self, data):
        d = self._hf_copy()
        path = os.path.join(d, "model.safetensors")
        from safetensors.numpy import load_file, save_file

        tensors = load_file(path)
        name = data.draw(st.sampled_from(sorted(tensors)))
        flat = tensors[name].reshape(-1)
        flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        save_file(tensors, path)
        message = self.assert_loads_or_one_line_error(d)
        self.assertIsNotNone(message)
        self.assertIn(name, message)

    @FUZZ
    @given(st.sampled_from(["num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                            "num_key_value_heads", "vocab_size", "head_dim", "max_position_embeddings",
                            "rms_norm_eps", "rope_theta", "tie_word_embeddings", "model_type"]), HOSTILE)
    def test_config_fields(self, key, value):
        d = self._hf_copy()
        config_path = os.path.join(d, "config.json")
        config = json.load(open(config_path))
        config[key] = value
        with open(config_path, "w") as f:
            json.dump(config, f)
        self.assert_loads_or_one_line_error(d)

    # -- exported .tflite metadata -------------------------------------------------------------------------
    @FUZZ
    @given(st.data())
    def test_tflite_metadata(self, data):
        content = bytearray(self.tflite)
        if data.draw(st.booleans()):
            content = content[:data.draw(st.integers(0, len(content) - 1))]
        else:
            for _ in range(data.draw(st.integers(1, 8))):
                content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
        try:
            meta = runtime.read_metadata(bytes(content))
        except TernaryVLMError as e:
            self.assertNotIn("\n", str(e))
        else:
            self.assertIsInstance(meta, dict)


if __name__ == "__main__":
    absltest.main()
