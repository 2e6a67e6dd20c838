"""Shared constants for BUILD files."""

# Targets that need the host's Python venv (x86-64 wheels): skipped under --config=aarch64.
HOST_ONLY = ["@platforms//cpu:x86_64"]
