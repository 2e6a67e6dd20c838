"""llama.cpp's own ternary kernel as a single-op baseline: ggml's TQ2_0 matrix multiplication (2-bit ternary codes in
blocks of 256 with one fp16 scale; activations quantized to Q8_K on the fly, as llama.cpp runs a TQ2_0 model),
called through the ggml libraries that llama-cpp-python builds (bench/llama_cpp.py: a benchmark-only dependency).

One `Tq2Matmul` holds `copies` copies of one weight matrix, each in its own one-node graph y = W·x, so that timing
can rotate over copies to keep the weights cold, as bench_ops does for the LiteRT ops. The C API used is ggml.h and
ggml-cpu.h of the llama.cpp that llama-cpp-python 0.3.36 vendors (ggml_init, ggml_new_tensor_2d, ggml_mul_mat,
ggml_graph_plan, ggml_graph_compute); a mismatch raises rather than returning wrong figures: the result is checked
against numpy after the first run.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from ternary_vlm.errors import TernaryVLMError

GGML_TYPE_F32, GGML_TYPE_TQ2_0 = 0, 35
BLOCK = 256  # TQ2_0's block: K must be a multiple of it


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


class _Cplan(ctypes.Structure):
    _fields_ = [("work_size", ctypes.c_size_t), ("work_data", ctypes.c_void_p), ("n_threads", ctypes.c_int),
                ("threadpool", ctypes.c_void_p), ("abort_callback", ctypes.c_void_p),
                ("abort_callback_data", ctypes.c_void_p), ("use_ref", ctypes.c_bool)]


def _libraries():
    """ggml-base (graphs, quantization) and ggml-cpu (compute) as llama-cpp-python installed them."""
    import llama_cpp  # noqa: F401  (loads the libraries' dependencies first)

    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    found = {}
    for name in ("ggml-base", "ggml-cpu"):
        paths = sorted(glob.glob(os.path.join(lib_dir, f"lib{name}.so*")))
        if not paths:
            raise TernaryVLMError(f"lib{name}.so not found in {lib_dir} (llama-cpp-python's build)")
        found[name] = ctypes.CDLL(paths[0])
    base, cpu = found["ggml-base"], found["ggml-cpu"]
    p, i64, sz = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t
    for lib, name, res, args in (
            (base, "ggml_init", p, [_InitParams]), (base, "ggml_free", None, [p]),
            (base, "ggml_tensor_overhead", sz, []), (base, "ggml_graph_overhead", sz, []),
            (base, "ggml_row_size", sz, [ctypes.c_int, i64]),
            (base, "ggml_new_tensor_2d", p, [p, ctypes.c_int, i64, i64]),
            (base, "ggml_get_data", p, [p]), (base, "ggml_mul_mat", p, [p, p, p]),
            (base, "ggml_new_graph", p, [p]), (base, "ggml_build_forward_expand", None, [p, p]),
            (base, "ggml_quantize_chunk", sz, [ctypes.c_int, p, p, i64, i64, i64, p]),
            (cpu, "ggml_cpu_init", None, []), (cpu, "ggml_graph_plan", _Cplan, [p, ctypes.c_int, p]),
            (cpu, "ggml_graph_compute", ctypes.c_int, [p, ctypes.POINTER(_Cplan)])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    cpu.ggml_cpu_init()
    return base, cpu


class Tq2Matmul:
    """y[m, n] = x[m, k] · dense[n, k]ᵀ by ggml with `dense` stored as TQ2_0, in as many copies as exceed
    `cold_bytes` (at most 64)."""

    def __init__(self, dense: np.ndarray, m: int, threads: int, cold_bytes: int):
        n, k = dense.shape
        if k % BLOCK:
            raise TernaryVLMError(f"TQ2_0 needs rows of a multiple of {BLOCK} weights; got K = {k}")
        self._base, self._cpu = _libraries()
        base = self._base
        row_bytes = base.ggml_row_size(GGML_TYPE_TQ2_0, k)
        self.weight_bytes = n * row_bytes
        self.copies = copies = int(min(64, max(1, -(-cold_bytes // self.weight_bytes))))
        per_copy = self.weight_bytes + 4 * m * (k + n) + 4 * base.ggml_tensor_overhead() + base.ggml_graph_overhead()
        self._ctx = base.ggml_init(_InitParams(copies * per_copy + (1 << 20), None, False))
        if not self._ctx:
            raise TernaryVLMError(f"ggml_init could not allocate {copies * per_copy} bytes")
        self._dense = dense = np.ascontiguousarray(dense, np.float32)
        packed = np.empty(self.weight_bytes, np.uint8)
        base.ggml_quantize_chunk(GGML_TYPE_TQ2_0, dense.ctypes.data, packed.ctypes.data, 0, n, k, None)
        self._graphs, self._inputs, self._outputs = [], [], []
        for _ in range(copies):
            w = base.ggml_new_tensor_2d(self._ctx, GGML_TYPE_TQ2_0, k, n)  # ggml's ne0 is the row length
            ctypes.memmove(base.ggml_get_data(w), packed.ctypes.data, self.weight_bytes)
            x = base.ggml_new_tensor_2d(self._ctx, GGML_TYPE_F32, k, m)
            y = base.ggml_mul_mat(self._ctx, w, x)
            graph = base.ggml_new_graph(self._ctx)
            base.ggml_build_forward_expand(graph, y)
            self._graphs.append(graph)
            self._inputs.append(np.ctypeslib.as_array(ctypes.cast(base.ggml_get_data(x),
                                                                  ctypes.POINTER(ctypes.c_float)), (m, k)))
            self._outputs.append(np.ctypeslib.as_array(ctypes.cast(base.ggml_get_data(y),
                                                                   ctypes.POINTER(ctypes.c_float)), (m, n)))
        self._plans = [self._cpu.ggml_graph_plan(g, threads, None) for g in self._graphs]
        self._work = np.empty(max(p.work_size for p in self._plans) + 64, np.uint8)
        for plan in self._plans:  # one work buffer: the copies run one after another
            plan.work_data = self._work.ctypes.data

    def run(self, copy: int) -> np.ndarray:
        status = self._cpu.ggml_graph_compute(self._graphs[copy], ctypes.byref(self._plans[copy]))
        if status != 0:
            raise TernaryVLMError(f"ggml_graph_compute failed with status {status}")
        return self._outputs[copy]

    def set_input(self, x: np.ndarray) -> None:
        """Sets x in every copy, then checks copy 0's result against numpy: TQ2_0 stores ternary rows exactly up to
        the fp16 rounding of their scale, and Q8_K rounds x to 1/127 of each 256-block's largest |x|, so the error
        bound is a few times 1/127 of the largest output, not an exact match."""
        for buf in self._inputs:
            buf[...] = x
        want = x.astype(np.float64) @ self._dense.T.astype(np.float64)
        err = np.abs(self.run(0) - want).max() / np.abs(want).max()
        if not err < 2e-2:
            raise TernaryVLMError(f"ggml's TQ2_0 result differs from numpy: max relative error {err:.3g}")

    def close(self) -> None:
        if self._ctx:
            self._base.ggml_free(self._ctx)
            self._ctx = None
