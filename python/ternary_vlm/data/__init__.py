"""Offline data: procedural vision-language scenes (scenes.py), real English text and the held-out texts
(text.py, eval_texts.py), the default training text of a language model (installed_text.py), text sampled from
the float model (teacher_text.py), the user's --data (user_data.py), and batching for training (batches.py)."""
