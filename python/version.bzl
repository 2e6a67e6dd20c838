"""The project's version: the one place it is written (ternary_vlm/_version.py and the wheels are made from it)."""

VERSION = "0.5.0"
