"""Image preprocessing and the image+text prompt against transformers' Idefics3Processor (PIL backend) for
the same files: pixel values, tile grid, chat text and token ids."""

import json
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import transformers  # noqa: E402
from absl.testing import absltest, parameterized  # noqa: E402
from PIL import Image  # noqa: E402
from tokenizers import AddedToken  # noqa: E402

from ternary_vlm.checkpoints import processing  # noqa: E402
from ternary_vlm.checkpoints.gguf import GGUFCheckpoint, smollm2_gguf_path  # noqa: E402
from ternary_vlm.models.config import config_from_dict  # noqa: E402
from ternary_vlm.checkpoints.tokenizer import Tokenizer  # noqa: E402

VLM_CONFIG = {"model_type": "smolvlm", "scale_factor": 2, "image_token_id": 0,
              "text_config": {"vocab_size": 49300, "hidden_size": 32, "num_attention_heads": 4},
              "vision_config": {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_attention_heads": 2}}
IMAGE_TOKENS = (["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] +
                [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])


def _write_checkpoint_files(directory, splitting):
    """SmolVLM-style tokenizer files (SmolLM2's vocabulary + the image tokens) and a preprocessor config."""
    tok = Tokenizer.from_gguf_metadata(GGUFCheckpoint(smollm2_gguf_path()).meta)
    tok.backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in IMAGE_TOKENS])
    tok.backend.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>"}, f)
    with open(os.path.join(directory, "chat_template.json"), "w") as f:
        json.dump({"chat_template": processing.DEFAULT_VLM_CHAT_TEMPLATE}, f)
    pre = {"do_convert_rgb": True, "do_resize": True, "size": {"longest_edge": 96}, "resample": 1,
           "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.4, 0.3],
           "image_std": [0.2, 0.25, 0.3], "do_pad": True, "do_image_splitting": splitting,
           "max_image_size": {"longest_edge": 32}}
    with open(os.path.join(directory, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f)
    return pre


class ProcessingTest(parameterized.TestCase):

    @parameterized.product(splitting=[False, True], size=[(53, 37), (70, 120), (20, 20)])
    def test_matches_idefics3_processor(self, splitting, size):
        vlm_config = config_from_dict(VLM_CONFIG)
        rng = np.random.default_rng(sum(size))
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        with tempfile.TemporaryDirectory() as d:
            pre = _write_checkpoint_files(d, splitting)
            ours_tok = Tokenizer.from_directory(d)
            ours_proc = processing.ImageProcessor.from_directory(d, vlm_config)
            hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
            hf = transformers.Idefics3Processor(
                image_processor=transformers.Idefics3ImageProcessorPil(**pre), tokenizer=hf_tok,
                image_seq_len=vlm_config.image_seq_len, chat_template=processing.DEFAULT_VLM_CHAT_TEMPLATE)

        prompt = "What is in this image? Count 12 things."
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        want_text = hf.apply_chat_template(messages, add_generation_prompt=True)
        self.assertEqual(processing.chat_text(ours_tok, prompt, with_image=True, vlm=True), want_text)

        want = hf(text=want_text, images=[image], return_tensors="np")
        ids, pixels = processing.build_inputs(ours_tok, prompt, image=image, image_processor=ours_proc,
                                              vlm_config=vlm_config)
        self.assertEqual(ids, want["input_ids"][0].tolist())
        want_pixels = want["pixel_values"][0]
        self.assertEqual(pixels.shape, want_pixels.shape)
        np.testing.assert_allclose(pixels, want_pixels, atol=1e-6)
        if splitting and max(size) > 32:
            self.assertGreater(pixels.shape[0], 1)  # tiles + the global view
        n_image = ids.count(ours_tok.token_to_id("<image>"))
        self.assertEqual(n_image, pixels.shape[0] * vlm_config.image_seq_len)

    def test_prompt_expansion(self):
        self.assertEqual(processing.image_prompt(0, 0, 2),
                         "<fake_token_around_image><global-img><image><image><fake_token_around_image>")
        self.assertEqual(processing.image_prompt(1, 2, 1),
                         "<fake_token_around_image><row_1_col_1><image><fake_token_around_image><row_1_col_2>"
                         "<image>\n\n<fake_token_around_image><global-img><image><fake_token_around_image>")


if __name__ == "__main__":
    absltest.main()
