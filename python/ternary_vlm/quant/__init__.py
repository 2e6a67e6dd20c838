"""Ternary and binary quantization: the scheme table (schemes.py), the one packing format (packing.py, from C++),
scale initializations (init.py, calibrate.py: output-aware), the QAT layer (layers.py), turning a model's linears
into it (apply.py), the ternarize output format (artifact.py) and the shipped compact artifacts (compact.py)."""
