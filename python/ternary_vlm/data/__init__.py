"""Offline data: procedural vision-language scenes (scenes.py) and real English text (text.py)."""
