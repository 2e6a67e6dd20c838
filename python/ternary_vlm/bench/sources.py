"""Where the model benchmark's weights and inputs come from: the float model, its quantized twins (a ternarize
output, a shipped compact artifact, or the float model quantized in memory), the fixed prompt and the text."""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import logging

MODEL_NAMES = {"demo": "demo VLM (python/demo_vlm)", "smollm2": "SmolLM2-135M-Instruct (text only)",
               "smollm2-vlm": "SmolLM2-135M-Instruct with a vision tower (grafted VLM, python/artifacts/smollm2-vlm)"}
TEXT_PROMPT = "What is the capital of France?"


class Source:
    """Where each variant's weights come from: the float model, or a quantized twin (ternary / binary)."""

    def __init__(self, name: str, demo_outputs: dict[str, str | None]):
        """demo_outputs: mode -> a ternarize output directory for the demo VLM's quantized variants (None:
        quantize the float model in memory, k-means init, no QAT)."""
        from ternary_vlm.checkpoints import model_path
        from ternary_vlm.checkpoints.loader import load_model

        self.name, self.demo_outputs = name, demo_outputs
        self.path = model_path(None if name == "demo" else name)
        start = time.time()
        self.loaded = load_model(self.path)
        logging.info("%s: loaded %s in %.1f s", name, self.path, time.time() - start)
        self._quantized = {}
        self.full_layers = self.loaded.text_config.num_hidden_layers
        self.full_model_ppl = {}

    def truncate(self, n: int, ids, window: int, windows: int) -> None:
        """Keeps the first n decoder layers (in place), after the full model's Flax perplexities (float and
        post-init ternary / binary) on the same text windows: the quality the export would have in full."""
        import dataclasses

        from flax import nnx

        from ternary_vlm.train import evaluate
        from ternary_vlm.quant.apply import quantize_model

        model = self.loaded.model
        if not 0 < n < self.full_layers:
            return
        if windows:
            for mode in ("fp32", "ternary", "binary"):
                m = model if mode == "fp32" else nnx.clone(model)
                if mode != "fp32":
                    quantize_model(m, mode, "kmeans", [], self.full_layers)
                self.full_model_ppl[mode] = evaluate.text_perplexity(m, ids, window, batch_size=2,
                                                                     max_windows=windows)
                logging.info("%s (all %d layers, Flax) %s text perplexity %.4g", self.name, self.full_layers, mode,
                             self.full_model_ppl[mode])
                del m
        model.cfg = dataclasses.replace(model.cfg, num_hidden_layers=n)
        model.layers = nnx.List(list(model.layers)[:n])
        self.loaded.config = model.cfg
        logging.info("%s: truncated to its first %d of %d decoder layers", self.name, n, self.full_layers)

    def quantized(self, mode: str):
        """(model, quantized layers for export.convert, description)."""
        if mode in self._quantized:
            return self._quantized[mode]
        from flax import nnx

        from ternary_vlm.checkpoints.loader import load_model
        from ternary_vlm.quant import artifact, compact
        from ternary_vlm.quant.apply import quantize_model

        name = f"{self.name}-{mode}"  # a shipped compact artifact (smollm2-ternary, smollm2-vlm-ternary), if any
        if self.name == "demo":
            directory = self.demo_outputs.get(mode)
        else:
            directory = compact.materialize(name) if compact.available(name) else None
        start = time.time()
        if directory:
            loaded = load_model(directory)
            layers = artifact.read(loaded.model, directory)
            steps = None
            try:
                with open(os.path.join(directory, "report.json")) as f:
                    report = json.load(f)
                steps, init, origin = report.get("steps"), report.get("init"), report.get("init_from")
            except (OSError, ValueError):
                init, origin = "?", None
            trained = f"{steps} more QAT steps from {origin}" if origin else f"{steps} QAT steps"
            how = f"ternarize output ({init} init, {trained})" if steps else "ternarize output (no QAT)"
            if self.name != "demo":
                how = f"python/artifacts/{name}: " + how
            result = (loaded.model, layers, how)
        else:
            model = nnx.clone(self.loaded.model)
            reports = quantize_model(model, mode, "kmeans", [], self.loaded.text_config.num_hidden_layers)
            err = float(np.mean([r.relative_error for r in reports]))
            result = (model, None, f"in-memory k-means init, post-init, no QAT ({len(reports)} layers, "
                                   f"mean rel. error {err:.3f})")
        logging.info("%s %s: %s (%.1f s)", self.name, mode, result[2], time.time() - start)
        self._quantized[mode] = result
        return result

    def for_variant(self, variant):
        """(model, quantized layers, description) of an export variant (export/variants.py)."""
        if variant.scheme is None:
            return self.loaded.model, None, "float weights" + ("" if self.name == "demo" else
                                                               " (the decoder: the dequantized Q4_1 GGUF)")
        return self.quantized(variant.scheme.mode)


def prompt_inputs(source: Source, batcher):
    """The fixed prompt of the speed measurements: the caption prompt of test scene 0 (VLM) or a chat question."""
    from ternary_vlm.checkpoints import processing
    from ternary_vlm.data import scenes

    loaded = source.loaded
    if loaded.is_vlm:
        ex = scenes.example(0, "test", 0, loaded.config.vision.image_size)
        prompt, _, pixels = batcher.scene_row(ex, "caption")
        return {"ids": np.asarray(prompt, np.int32), "pixel_values": pixels}
    ids, _ = processing.build_inputs(loaded.tokenizer, TEXT_PROMPT)
    return {"ids": np.asarray(ids, np.int32)}


def text_ids(source: Source, batcher) -> np.ndarray:
    """The pydoc test split as one stream: as train/evaluate.py for the VLM, as cli/init_experiment.py for SmolLM2."""
    from ternary_vlm.data import text
    if source.loaded.is_vlm:
        return batcher.text_ids("test")
    tok = source.loaded.tokenizer
    return np.asarray([i for p in text.split("test") for i in tok.encode(p, add_special_tokens=False)], np.int32)
