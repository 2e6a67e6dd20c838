"""Inputs for SmolVLM / Idefics3 as their transformers processor makes them, from the checkpoint's files.

  ImageProcessor   preprocessor_config.json: resize the longest edge (LANCZOS), optionally split into
                   max_image_size tiles + a global view, rescale, normalize -> pixel_values [tiles, C, H, W]
                   (the vision encoder cuts these into patches: models.siglip.patchify)
  image_prompt     the <image> expansion: <fake_token_around_image><global-img><image>*seq_len... and, for
                   split images, one <row_r_col_c> block per tile, as Idefics3Processor/SmolVLMProcessor write it
  load_processing  what generation needs of a checkpoint besides its weights (config, tokenizer, image
                   processor): the part of a LoadedModel (checkpoints/loader.py) that needs no JAX
  build_prompt     chat template (the checkpoint's own, else SmolVLM's default) + image expansion -> token ids
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np
from PIL import Image

from ternary_vlm.checkpoints.tokenizer import Tokenizer, render_chat_template
from ternary_vlm.errors import CheckpointError, TernaryVLMError
from ternary_vlm.models.config import VLMConfig, config_from_dict

FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
IMAGE_TOKEN = "<image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
MAX_IMAGE_SIZE = 4096  # transformers' absolute cap on a resized image side

# SmolVLM's chat template (transformers' processing_smolvlm DEFAULT_CHAT_TEMPLATE without video), used when
# a checkpoint ships none.
DEFAULT_VLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'] is string %}"
    "{{': ' + message['content']}}{% else %}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}"
    "{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")

_IMAGENET_STANDARD = [0.5, 0.5, 0.5]


def _rescale_to_max_len(height: int, width: int, max_len: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height:
        width = max_len
        height = int(width / aspect)
        height += height % 2
    else:
        height = max_len
        width = int(height * aspect)
        width += width % 2
    return max(height, 1), max(width, 1)


def _scale_below(height: int, width: int, max_len: int) -> tuple[int, int]:
    aspect = width / height
    if width >= height and width > max_len:
        width, height = max_len, int(max_len / aspect)
    elif height > width and height > max_len:
        height, width = max_len, int(max_len * aspect)
    return max(height, 1), max(width, 1)


class ImageProcessor:
    """A single image -> pixel_values [tiles, C, H, W] float32, rows, cols (0, 0 when not split)."""

    def __init__(self, config: dict[str, Any], vlm_config: VLMConfig | None = None):
        self.do_convert_rgb = config.get("do_convert_rgb", True)
        self.do_resize = config.get("do_resize", True)
        self.size = config.get("size", {"longest_edge": 4 * 364})
        self.resample = int(config.get("resample", Image.Resampling.LANCZOS))
        self.do_rescale = config.get("do_rescale", True)
        self.rescale_factor = float(config.get("rescale_factor", 1 / 255))
        self.do_normalize = config.get("do_normalize", True)
        self.image_mean = config.get("image_mean", _IMAGENET_STANDARD)
        self.image_std = config.get("image_std", _IMAGENET_STANDARD)
        self.do_image_splitting = config.get("do_image_splitting", True)
        self.max_image_size = int(config.get("max_image_size", {"longest_edge": 364})["longest_edge"])
        if vlm_config is not None and self.max_image_size % vlm_config.vision.patch_size:
            raise CheckpointError(f"preprocessor_config.json: max_image_size {self.max_image_size} is not a "
                                  f"multiple of the vision patch_size {vlm_config.vision.patch_size}")

    @classmethod
    def from_directory(cls, directory: str, vlm_config: VLMConfig | None = None) -> "ImageProcessor":
        path = os.path.join(directory, "preprocessor_config.json")
        try:
            with open(path) as f:
                return cls(json.load(f), vlm_config)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"preprocessor_config.json: unreadable ({e})") from None

    def _resize(self, image: Image.Image, height: int, width: int) -> Image.Image:
        return image.resize((width, height), resample=self.resample)

    def __call__(self, image: Image.Image | str) -> tuple[np.ndarray, int, int]:
        if isinstance(image, str):
            try:
                image = Image.open(image)
                image.load()
            except (OSError, ValueError) as e:
                raise TernaryVLMError(f"cannot read image: {e}") from None
        if self.do_convert_rgb:
            image = image.convert("RGB")
        if self.do_resize:
            if "longest_edge" in self.size:
                h, w = _rescale_to_max_len(image.height, image.width, int(self.size["longest_edge"]))
                h, w = _scale_below(h, w, MAX_IMAGE_SIZE)
            else:
                h, w = int(self.size["height"]), int(self.size["width"])
            image = self._resize(image, h, w)
        m = self.max_image_size
        if self.do_image_splitting:
            # resize_for_vision_encoder: both sides up to multiples of max_image_size.
            h, w = image.height, image.width
            aspect = w / h
            if w >= h:
                w = math.ceil(w / m) * m
                h = math.ceil(int(w / aspect) / m) * m
            else:
                h = math.ceil(h / m) * m
                w = math.ceil(int(h * aspect) / m) * m
            image = self._resize(image, h, w)
            if h > m or w > m:
                rows, cols = (h - m) // m + 1, (w - m) // m + 1
                tiles = [image.crop((c * m, r * m, c * m + m, r * m + m)) for r in range(rows) for c in range(cols)]
                tiles.append(self._resize(image, m, m))
            else:
                rows, cols, tiles = 0, 0, [image]
        else:
            rows, cols, tiles = 0, 0, [self._resize(image, m, m)]
        arrays = [np.asarray(t).transpose(2, 0, 1) for t in tiles]  # CHW uint8
        out = []
        for a in arrays:
            x = a
            if self.do_rescale:
                x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
            if self.do_normalize:
                x = x.astype(np.float32, copy=False)
                mean = np.asarray(self.image_mean, np.float32)[:, None, None]
                std = np.asarray(self.image_std, np.float32)[:, None, None]
                x = (x - mean) / std
            out.append(x.astype(np.float32, copy=False))
        return np.stack(out), rows, cols


def image_prompt(rows: int, cols: int, image_seq_len: int) -> str:
    """The text an <image> placeholder becomes (Idefics3Processor / SmolVLMProcessor)."""
    if rows == 0 and cols == 0:
        return FAKE_IMAGE_TOKEN + GLOBAL_IMAGE_TOKEN + IMAGE_TOKEN * image_seq_len + FAKE_IMAGE_TOKEN
    text = ""
    for r in range(rows):
        for c in range(cols):
            text += FAKE_IMAGE_TOKEN + f"<row_{r + 1}_col_{c + 1}>" + IMAGE_TOKEN * image_seq_len
        text += "\n"
    return text + "\n" + FAKE_IMAGE_TOKEN + GLOBAL_IMAGE_TOKEN + IMAGE_TOKEN * image_seq_len + FAKE_IMAGE_TOKEN


def expand_image_tokens(text: str, grids: list[tuple[int, int]], image_seq_len: int) -> str:
    """Replaces the i-th <image> of text by image_prompt(*grids[i])."""
    parts = text.split(IMAGE_TOKEN)
    if len(parts) - 1 != len(grids):
        raise TernaryVLMError(f"the prompt has {len(parts) - 1} {IMAGE_TOKEN} tokens but {len(grids)} images "
                              f"were given")
    out = parts[0]
    for (rows, cols), rest in zip(grids, parts[1:]):
        out += image_prompt(rows, cols, image_seq_len) + rest
    return out


def chat_text(tokenizer: Tokenizer, prompt: str, *, with_image: bool, vlm: bool) -> str:
    """The user turn + generation prompt through the checkpoint's chat template (SmolVLM's default for VLMs
    without one; plain prompt for text models without one)."""
    if vlm:
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
        template = tokenizer.chat_template or DEFAULT_VLM_CHAT_TEMPLATE
        return render_chat_template(template, messages, add_generation_prompt=True,
                                    bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or "")
    if not tokenizer.chat_template:
        return prompt
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)


def build_inputs(tokenizer: Tokenizer, prompt: str, *, image=None, image_processor: ImageProcessor | None = None,
                 vlm_config: VLMConfig | None = None, use_chat_template: bool = True):
    """(token ids list, pixel_values or None). With an image, the chat text gets its <image> expanded."""
    if image is not None and vlm_config is None:
        raise TernaryVLMError("an image was given but the model is text-only")
    if image is not None and image_processor is None:
        raise TernaryVLMError("the checkpoint has no preprocessor_config.json: cannot process an image")
    text = chat_text(tokenizer, prompt, with_image=image is not None, vlm=vlm_config is not None) \
        if use_chat_template else ((IMAGE_TOKEN if image is not None else "") + prompt)
    pixel_values = None
    if image is not None:
        pixel_values, rows, cols = image_processor(image)
        text = expand_image_tokens(text, [(rows, cols)], vlm_config.image_seq_len)
    return tokenizer.encode(text), pixel_values


def vlm_preprocessor_config(image_size: int) -> dict:
    """preprocessor_config.json of a VLM that sees each image whole at image_size px (no tiles), normalized to
    [-1, 1]: the demo VLM's and the grafted VLMs' (checkpoints/grafted_vlm.py)."""
    return {"image_processor_type": "SmolVLMImageProcessor", "do_convert_rgb": True, "do_resize": True,
            "size": {"longest_edge": image_size}, "resample": 1, "do_image_splitting": False,
            "max_image_size": {"longest_edge": image_size}, "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_pad": True}


@dataclasses.dataclass
class Processing:
    """What generation needs of a checkpoint besides its weights: config, tokenizer, image processor."""
    config: Any
    tokenizer: Any
    image_processor: Any = None
    path: str = ""

    @property
    def is_vlm(self) -> bool:
        return isinstance(self.config, VLMConfig)

    @property
    def text_config(self):
        return self.config.text if self.is_vlm else self.config


def load_processing(path: str) -> Processing:
    """Config, tokenizer and image processor of a model directory (no weights, no JAX) or a GGUF file
    (its metadata; the GGUF reader lives beside the JAX loader)."""
    if os.path.isfile(path):
        from ternary_vlm.checkpoints.gguf import GGUFCheckpoint
        checkpoint = GGUFCheckpoint(path)
        return Processing(checkpoint.config, Tokenizer.from_gguf_metadata(checkpoint.meta), None, path)
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path) as f:
            config = config_from_dict(json.load(f))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path}: unreadable ({e})") from None
    tokenizer = Tokenizer.from_directory(path) if os.path.exists(os.path.join(path, "tokenizer.json")) else None
    image_processor = None
    if isinstance(config, VLMConfig) and os.path.exists(os.path.join(path, "preprocessor_config.json")):
        image_processor = ImageProcessor.from_directory(path, config)
    return Processing(config, tokenizer, image_processor, path)
