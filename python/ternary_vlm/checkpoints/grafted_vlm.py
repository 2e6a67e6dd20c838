"""A VLM grafted onto a pretrained text decoder: SmolVLM's layout (a SigLIP-style encoder, pixel shuffle and a
projection, trained here) in front of a pretrained Llama decoder (SmolLM2-135M-Instruct from the pip GGUF) whose
weights stay exactly as they are.

What the decoder gains:
  - the three image tokens of the SmolVLM processor (<fake_token_around_image>, <global-img>, <image>) appended to
    its vocabulary where it lacks them. Their embedding rows are the mean row: the <image> rows are replaced by
    image features and the other two only mark where an image sits, so nothing depends on training them, and
    the mean row's small norm keeps their tied logits low (the LM never emits them).
  - a chat template that is the decoder's own ChatML with image parts (`CHAT_TEMPLATE`), so a frozen
    instruction-tuned LM answers in the turn format it was tuned on and ends its turn with its own <|im_end|>
    (SmolVLM adds <end_of_utterance>, which a frozen LM could not learn to emit).

Shipped in compact form (python/artifacts/NAME, see NAMES): config.json, preprocessor_config.json,
graft.safetensors (vision encoder, connector, added embedding rows), README.md and scores.json. `materialize(NAME)`
rebuilds the whole Hugging Face SmolVLM directory (decoder included, tokenizer files) from the base once, in the
cache folder; transformers' SmolVLMForConditionalGeneration loads that directory.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import tokenizers
from safetensors.numpy import load_file, save_file
from tokenizers import AddedToken

from ternary_vlm import atomic
from ternary_vlm.checkpoints import processing
from ternary_vlm.checkpoints.tokenizer import Tokenizer
from ternary_vlm.errors import CheckpointError
from ternary_vlm.models.config import TextConfig, text_config_dict

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
NAMES = ("smollm2-vlm",)
IMAGE_TOKENS = (processing.FAKE_IMAGE_TOKEN, processing.GLOBAL_IMAGE_TOKEN, processing.IMAGE_TOKEN)
GRAFT_FILE = "graft.safetensors"
_TEXT_PREFIX = "model.text_model."
_COPIED = ("config.json", "preprocessor_config.json", "README.md", "scores.json")

# ChatML (SmolLM2-Instruct's turn format) with SmolVLM's content parts; no default system turn, which would add
# ~20 tokens to every training row.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

# The vision tower trained here: 48 px scenes in 8 px patches (36), pixel shuffle x2 -> 9 image tokens.
VISION = {"model_type": "smolvlm_vision", "hidden_size": 192, "intermediate_size": 768, "num_hidden_layers": 4,
          "num_attention_heads": 3, "num_channels": 3, "image_size": 48, "patch_size": 8,
          "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6}
SCALE_FACTOR = 2


def vision_tower():
    """The nnx filter of what a grafted VLM trains while its decoder stays fixed: the vision encoder and connector
    (pretrain_vlm; ternarize --freeze_decoder)."""
    from flax import nnx
    return nnx.All(nnx.Param, nnx.Any(nnx.PathContains("vision_model"), nnx.PathContains("connector")))


def trainable(path: str, freeze_decoder: bool):
    """The nnx filter of what QAT of the VLM at `path` trains: the vision tower alone with a frozen decoder; else
    every parameter, but for a grafted VLM not the embedding (and tied LM head): as for its language model
    (train/text_recipe.py), it stays the base's, which the compact form re-derives instead of storing 113 MB."""
    from flax import nnx

    from ternary_vlm.train.loop import all_but_embedding
    if freeze_decoder:
        return vision_tower()
    if json.load(open(os.path.join(path, "config.json"))).get("grafted_on"):
        return all_but_embedding()
    return nnx.Param


def tokenizer(text_tokenizer: Tokenizer) -> Tokenizer:
    """The decoder's tokenizer with the image tokens it lacks appended (ids from its vocabulary size on) and
    CHAT_TEMPLATE; bos / eos stay the decoder's."""
    backend = tokenizers.Tokenizer.from_str(text_tokenizer.backend.to_str())
    missing = [t for t in IMAGE_TOKENS if backend.token_to_id(t) is None]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    return Tokenizer(backend, bos_token=text_tokenizer.bos_token, eos_token=text_tokenizer.eos_token,
                     chat_template=CHAT_TEMPLATE)


def hf_config(text: TextConfig, tok: Tokenizer) -> dict:
    """config.json of the grafted SmolVLM (text_config = the decoder's, vocabulary grown to the tokenizer's)."""
    if text.eos_token_id is None or tok.eos_token_id is None:
        raise CheckpointError("the language model names no end-of-turn token (eos), which the VLM's answers end with")
    vocab = max(text.vocab_size, tok.backend.get_vocab_size(with_added_tokens=True))
    text_config = {k: v for k, v in text_config_dict(text).items() if k != "architectures"}
    text_config["vocab_size"] = vocab
    return {"architectures": ["SmolVLMForConditionalGeneration"], "model_type": "smolvlm",
            "image_token_id": tok.token_to_id(processing.IMAGE_TOKEN), "scale_factor": SCALE_FACTOR,
            "tie_word_embeddings": text.tie_word_embeddings, "text_config": text_config, "vision_config": dict(VISION)}


def _vlm_name(text_name: str) -> str:
    """The VLM's transformers name of a text-only decoder's tensor (an untied LM head keeps its name)."""
    return text_name if text_name.startswith("lm_head.") else _TEXT_PREFIX + text_name.removeprefix("model.")


def grafted_tensors(text_tensors: dict[str, np.ndarray], vocab: int) -> dict[str, np.ndarray]:
    """A text-only decoder's tensors under the VLM's names, the embedding (and an untied LM head) grown to `vocab`
    rows with the mean row."""
    out = {}
    for name, t in text_tensors.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight") and t.shape[0] < vocab:
            t = np.concatenate([t, np.repeat(t.mean(axis=0, keepdims=True), vocab - t.shape[0], axis=0)])
        out[_vlm_name(name)] = t
    return out


def graft(loaded, seed: int = 0):
    """(SmolVLM with a fresh vision tower and the decoder of `loaded` (a text-only LoadedModel), its config.json
    dict, its tokenizer)."""
    from flax import nnx

    from ternary_vlm.checkpoints import writer
    from ternary_vlm.models.config import config_from_dict
    from ternary_vlm.models.smolvlm import SmolVLM

    if loaded.is_vlm:
        raise CheckpointError(f"{loaded.path} is already a VLM: graft a vision tower onto a text-only decoder")
    tok = tokenizer(loaded.tokenizer)
    config = hf_config(loaded.config, tok)
    model = SmolVLM(config_from_dict(config), rngs=nnx.Rngs(seed))
    text = grafted_tensors(writer.state_dict(loaded.model, text_config_dict(loaded.config)),
                           config["text_config"]["vocab_size"])
    _load_text(model, text)
    return model, config, tok


def _load_text(model, tensors: dict[str, np.ndarray]) -> None:
    """Puts the decoder tensors (VLM names) into model.text_model."""
    import jax.numpy as jnp
    from flax import nnx

    from ternary_vlm.checkpoints.loader import hf_tensor_name

    state = nnx.state(model.text_model, nnx.Param)
    flat = []
    for path, var in nnx.to_flat_state(state):
        name = hf_tensor_name(("text_model",) + tuple(path), True)
        flat.append((path, var.replace(jnp.asarray(tensors[name]))))
    nnx.update(model.text_model, nnx.from_flat_state(flat))


def write_files(directory: str, tok: Tokenizer) -> None:
    """The tokenizer and image-processor files of a grafted VLM directory."""
    tok.save(directory)
    config = processing.vlm_preprocessor_config(VISION["image_size"])
    with open(os.path.join(directory, "preprocessor_config.json"), "w") as f:
        json.dump(config, f, indent=1)


# -- the compact form --------------------------------------------------------------------------------------------

def write_compact(vlm_dir: str, base_flag: str, dest: str) -> None:
    """The compact form of a grafted VLM directory whose decoder is the untouched `base_flag` model: every tensor
    the base gives back is checked equal to it and left out; the added embedding rows are kept (as NAME:added)."""
    from safetensors import safe_open

    from ternary_vlm.quant.compact import base_tensors

    base, _ = base_tensors(base_flag)
    config = json.load(open(os.path.join(vlm_dir, "config.json")))
    expected = grafted_tensors(base, config["text_config"]["vocab_size"])
    base_rows = {_vlm_name(name): len(t) for name, t in base.items()}
    kept = {}
    with safe_open(os.path.join(vlm_dir, "model.safetensors"), framework="numpy") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            if name not in expected:
                kept[name] = t
                continue
            rows = base_rows[name]  # the added rows of a grown embedding are kept, the base's checked
            if not np.array_equal(t[:rows], expected[name][:rows]):
                raise CheckpointError(f"{vlm_dir}: tensor {name} differs from {base_flag}'s; the compact form holds "
                                      f"only a vision tower grafted onto an untouched decoder")
            if rows < t.shape[0]:
                kept[name + ":added"] = np.ascontiguousarray(t[rows:])
    with atomic.output_directory(dest) as tmp:
        for name in _COPIED:
            if os.path.exists(os.path.join(vlm_dir, name)):
                shutil.copy(os.path.join(vlm_dir, name), tmp)
        config["grafted_on"] = base_flag
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        save_file(kept, os.path.join(tmp, GRAFT_FILE))


def materialize(name: str, src: Path | None = None) -> str:
    """The Hugging Face directory of the named grafted VLM (its compact form in `src`, default
    python/artifacts/NAME), rebuilt from its base on first use and cached."""
    from ternary_vlm.quant.compact import base_tensors, cached_directory

    src = Path(src or ARTIFACTS / name)
    if not (src / GRAFT_FILE).exists():
        raise CheckpointError(f"{name}: no compact artifact at {src} (docs/RESULTS.md has the command that makes it)")

    def fill(tmp: str) -> None:
        config = json.load(open(src / "config.json"))
        base, text_tok = base_tensors(config["grafted_on"])
        tensors = grafted_tensors(base, config["text_config"]["vocab_size"])
        for key, t in load_file(str(src / GRAFT_FILE)).items():
            if key.endswith(":added"):
                key = key.removesuffix(":added")
                t = np.concatenate([tensors[key][: tensors[key].shape[0] - len(t)], t])
            tensors[key] = t
        for f in _COPIED:
            if (src / f).exists():
                shutil.copy(src / f, tmp)
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        write_files(tmp, tokenizer(text_tok))

    return cached_directory(src, ("config.json", GRAFT_FILE), name, fill)
