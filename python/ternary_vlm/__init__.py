"""Ternary and binary compression of vision-language models for edge devices."""
