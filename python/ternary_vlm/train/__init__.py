"""Training: the one loop (loop.py: optimizer, checkpoints, data parallel, losses of a step), the block-wise
reconstruction stage (blockwise.py), the text-only ternarization recipe that chains them (text_recipe.py), the
distillation losses (losses.py) and the demo VLM's evaluation (evaluate.py: caption scores, text perplexity).
The loop's names are re-exported here: `from ternary_vlm import train; train.train(...)`."""

from ternary_vlm.train.loop import TrainConfig, distillation_loss, lm_loss, logits_of, train  # noqa: F401
