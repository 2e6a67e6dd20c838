#!/usr/bin/env bash
# Runs a Python script on the emulated ARM64 device: Debian's arm64 python3.11 from the sysroot
# (@arm64_sysroot, located through its stamp) under qemu-aarch64, with the runfiles' python/ on
# sys.path so it imports ternary_vlm's LiteRT runtime (which finds the aarch64 //cc:ternary_ops),
# and the cpuinfo shim preloaded in the guest (qemu shows it the host's x86 /proc/cpuinfo).
#   run_on_device.sh <sysroot stamp> <cpuinfo shim .so> <fake cpuinfo> <script> [args...]
set -euo pipefail
sysroot="$(dirname "$(readlink -f "$1")")"
shim="$(readlink -f "$2")"
cpuinfo="$(readlink -f "$3")"
shift 3
exec /usr/bin/qemu-aarch64 -L "$sysroot" -E "LD_PRELOAD=$shim" -E "TVLM_FAKE_CPUINFO=$cpuinfo" \
    -E "PYTHONPATH=$PWD/python" "$sysroot/usr/bin/python3.11" "$@"
