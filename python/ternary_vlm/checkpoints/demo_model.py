"""The bundled demo VLM: its architecture, its tokenizer, and where its checkpoint lives.

A SmolVLM (same code path as any Idefics3/SmolVLM checkpoint), sized to train from scratch on two
CPU cores: SigLIP-style encoder 48×48 px / 8 px patches / 2 blocks of width 96, pixel shuffle ×2
(9 image tokens), Llama decoder 4 blocks of width 192 (6 query / 2 KV heads), tied embeddings,
a byte-level BPE of 1024 tokens trained on the scene vocabulary and the pydoc text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from ternary_vlm.checkpoints import processing
from ternary_vlm.data import scenes, text

# In Bazel runfiles and in the source tree alike: python/demo_vlm next to the package.
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "demo_vlm"
IMAGE_SIZE = 48
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>",
                  "<image>", "<fake_token_around_image>", "<global-img>"]
VOCAB_SIZE = 1024


def default_checkpoint() -> str:
    path = Path(os.environ.get("TERNARY_VLM_DEMO", CHECKPOINT_DIR))
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the bundled demo VLM is missing at {path} (tools/bazel run //python:pretrain_vlm)")
    return str(path)


def train_tokenizer(seed: int = 0) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [e.caption + " " + e.question + " " + e.answer for e in scenes.examples(seed, "train", 3000, 8)]
    corpus += [scenes.vocabulary_text()] * 50 + text.split("train")
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def hf_config(tok: Tokenizer) -> dict:
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    return {
        "architectures": ["SmolVLMForConditionalGeneration"],
        "model_type": "smolvlm",
        "image_token_id": ids["<image>"],
        "scale_factor": 2,
        "tie_word_embeddings": True,
        "text_config": {
            "model_type": "llama", "vocab_size": tok.get_vocab_size(), "hidden_size": 192,
            "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 6,
            "num_key_value_heads": 2, "head_dim": 32, "hidden_act": "silu", "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": True,
            "bos_token_id": ids["<|im_start|>"], "eos_token_id": ids["<end_of_utterance>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        "vision_config": {
            "model_type": "smolvlm_vision", "hidden_size": 96, "intermediate_size": 256,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_channels": 3, "image_size": IMAGE_SIZE,
            "patch_size": 8, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
        },
    }


def write_tokenizer_files(tok: Tokenizer, directory: str) -> None:
    tok.save(os.path.join(directory, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>",
              "eos_token": "<end_of_utterance>", "pad_token": "<|endoftext|>", "unk_token": None,
              "model_max_length": 256, "chat_template": processing.DEFAULT_VLM_CHAT_TEMPLATE,
              "extra_special_tokens": {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                                       "global_image_token": "<global-img>"}}
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    with open(os.path.join(directory, "preprocessor_config.json"), "w") as f:
        json.dump(processing.vlm_preprocessor_config(IMAGE_SIZE), f, indent=1)
