"""Thin absl entry points of the Bazel targets (flags in, one-line errors out)."""
