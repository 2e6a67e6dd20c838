#!/usr/bin/env bash
# Runs a Python script on the emulated ARM64 device: Debian's arm64 python3.11 from the sysroot
# (@arm64_sysroot, located through its stamp) under qemu-aarch64, with the runfiles' python/ on
# sys.path so it imports ternary_vlm's LiteRT wrapper (which finds the aarch64 //cc:ternary_ops).
#   run_on_device.sh <sysroot stamp> <script> [args...]
set -euo pipefail
sysroot="$(dirname "$(readlink -f "$1")")"
shift
export PYTHONPATH="$PWD/python"
exec /usr/bin/qemu-aarch64 -L "$sysroot" "$sysroot/usr/bin/python3.11" "$@"
