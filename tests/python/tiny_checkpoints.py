"""Tiny random SmolVLM / Idefics3 / Llama checkpoints written by transformers (the independent reference).

Test-only: needs torch and transformers. Weights get a larger init range than the default so logits are
O(1) and a wrong port cannot hide in tiny numbers.
"""

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

# Several shapes, including odd ones (head_dim 12, 3 heads / 1 KV head, 45-pixel images, scale factor 3).
VLM_CONFIGS = {
    "smolvlm_gqa": dict(
        model_type="smolvlm", scale_factor=2, image_token_id=150, tie_word_embeddings=False,
        text=dict(vocab_size=160, hidden_size=48, intermediate_size=72, num_hidden_layers=3,
                  num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=256),
        vision=dict(hidden_size=40, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
                    image_size=48, patch_size=8)),
    "idefics3_odd_tied": dict(
        model_type="idefics3", scale_factor=3, image_token_id=7, tie_word_embeddings=True,
        text=dict(vocab_size=131, hidden_size=36, intermediate_size=50, num_hidden_layers=2,
                  num_attention_heads=3, num_key_value_heads=1, max_position_embeddings=256, rms_norm_eps=1e-5),
        vision=dict(hidden_size=30, intermediate_size=46, num_hidden_layers=3, num_attention_heads=3,
                    image_size=45, patch_size=5)),
    "smolvlm_bias_rope": dict(
        model_type="smolvlm", scale_factor=4, image_token_id=99, tie_word_embeddings=False,
        text=dict(vocab_size=100, hidden_size=64, intermediate_size=40, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, attention_bias=True, head_dim=24,
                  rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, max_position_embeddings=512),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    image_size=64, patch_size=4)),
}

INIT_RANGE = 0.15


def make_vlm(directory: str, name: str, seed: int = 0):
    """Saves a random transformers model for VLM_CONFIGS[name] in directory; returns the torch model."""
    spec = VLM_CONFIGS[name]
    torch.manual_seed(seed)
    text = dict(spec["text"], model_type="llama", initializer_range=INIT_RANGE,
                tie_word_embeddings=spec["tie_word_embeddings"])
    vision = dict(spec["vision"], initializer_range=INIT_RANGE)
    if spec["model_type"] == "smolvlm":
        config = transformers.SmolVLMConfig(text_config=text, vision_config=vision, scale_factor=spec["scale_factor"],
                                            image_token_id=spec["image_token_id"],
                                            tie_word_embeddings=spec["tie_word_embeddings"])
        model = transformers.SmolVLMForConditionalGeneration(config)
    else:
        config = transformers.Idefics3Config(text_config=text, vision_config=vision,
                                             scale_factor=spec["scale_factor"], image_token_id=spec["image_token_id"],
                                             tie_word_embeddings=spec["tie_word_embeddings"])
        model = transformers.Idefics3ForConditionalGeneration(config)
    _spread_norms(model)
    model.eval()
    model.save_pretrained(directory)
    return model


def make_llama(directory: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    kw = dict(vocab_size=120, hidden_size=40, intermediate_size=64, num_hidden_layers=2, num_attention_heads=5,
              num_key_value_heads=1, max_position_embeddings=128, initializer_range=INIT_RANGE,
              tie_word_embeddings=True)
    kw.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kw))
    _spread_norms(model)
    model.eval()
    model.save_pretrained(directory)
    return model


def make_llama_with_tokenizer(directory: str, hidden_size: int = 48):
    """A tiny Llama that the text recipe can train (the demo VLM's tokenizer; SmolLM2's head layout, 3 query heads
    per KV head: with one KV head the converter folds the attention into a shape the KV-cache rewrite does not
    recognise, and export fails with its one-line error)."""
    from ternary_vlm.checkpoints import demo_model

    make_llama(directory, vocab_size=1024, num_hidden_layers=3, hidden_size=hidden_size, num_attention_heads=6,
               num_key_value_heads=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(demo_model.default_checkpoint(), name), directory)
    return directory


def _spread_norms(model):
    """Norm weights/biases are 1/0 at init; randomize them so a mixed-up norm would show."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
