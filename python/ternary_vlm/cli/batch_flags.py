"""The mix of a VLM training batch, one flag set for the CLIs that train a VLM (pretrain_vlm, ternarize)."""

from absl import flags

flags.DEFINE_integer("scene_rows", 24, "Scene examples per batch (half captions, half QA; loss on the answer).",
                     lower_bound=1)
flags.DEFINE_integer("text_rows", 8, "Text windows per batch beside the scenes (the text rows of Batcher.train_batch: "
                     "pydoc's train split, or ternarize's --data=installed). They train the decoder, so a decoder "
                     "kept frozen gets none.", lower_bound=0)
