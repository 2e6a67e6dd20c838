"""The model benchmark's parts, split by job: sources.py (weights and inputs), child.py (the measuring process),
quality.py (perplexity and parity with the .tflite), report.py (tables, targets, plot). Its command line is
cli/benchmark.py; the single-op benchmark is cli/bench_ops.py."""
