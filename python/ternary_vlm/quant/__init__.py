"""Ternary and binary quantization: scale initializations (init.py) and the QAT layer (layers.py)."""
