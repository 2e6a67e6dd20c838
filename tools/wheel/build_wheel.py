"""Writes one wheel (PEP 427) from files given on the command line; run by the py_wheel rule (tools/build_defs.bzl).

The platform tag is chosen by the rule from the target CPU; this checks it the way auditwheel would for our one
native library: the ELF machine must be the tag's architecture, and every glibc / libstdc++ symbol version the
library needs must exist in the tag's manylinux baseline (else the build fails, naming the version).
"""

import argparse
import base64
import hashlib
import io
import os
import re
import zipfile

# ELF e_machine of each wheel architecture.
MACHINES = {"x86_64": 62, "aarch64": 183}
# Newest libstdc++ symbol version shipped with each glibc baseline (the distributions manylinux_2_x names:
# glibc 2.34 = RHEL 9 / gcc 11, glibc 2.35 = Ubuntu 22.04 / gcc 12, glibc 2.36 = Debian 12 / gcc 12).
GLIBCXX_OF_GLIBC = {(2, 34): (3, 4, 29), (2, 35): (3, 4, 30), (2, 36): (3, 4, 30)}


def check_library(path: str, platform: str) -> None:
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if not m:
        raise SystemExit(f"{platform}: not a manylinux_X_Y_ARCH tag")
    glibc, arch = (int(m.group(1)), int(m.group(2))), m.group(3)
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or int.from_bytes(data[18:20], "little") != MACHINES[arch]:
        raise SystemExit(f"{path}: not an ELF library for {arch}")
    need = {tuple(map(int, v.split(b"."))) for v in re.findall(rb"GLIBC_(\d+\.\d+(?:\.\d+)?)\x00", data)}
    need_cxx = {tuple(map(int, v.split(b"."))) for v in re.findall(rb"GLIBCXX_(\d+\.\d+(?:\.\d+)?)\x00", data)}
    if need and max(need) > glibc:
        raise SystemExit(f"{path} needs GLIBC_{'.'.join(map(str, max(need)))}, newer than {platform}")
    if need_cxx and max(need_cxx) > GLIBCXX_OF_GLIBC[glibc]:
        raise SystemExit(f"{path} needs GLIBCXX_{'.'.join(map(str, max(need_cxx)))}, newer than {platform}")


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--distribution", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--tag", required=True, help="python-abi-platform, e.g. py3-none-manylinux_2_35_x86_64")
    p.add_argument("--summary", default="")
    p.add_argument("--requires", action="append", default=[])
    p.add_argument("--console_script", action="append", default=[], help="name=module:function")
    p.add_argument("--file", action="append", default=[], help="path/in/wheel=source")
    p.add_argument("--native", action="append", default=[], help="a file of --file to check against the tag")
    a = p.parse_args()
    platform = a.tag.split("-", 2)[2]
    for path in a.native:
        check_library(path, platform)
    dist = re.sub(r"[-_.]+", "_", a.distribution)
    info = f"{dist}-{a.version}.dist-info"
    files = {}
    for spec in a.file:
        dest, src = spec.split("=", 1)
        files[dest] = open(src, "rb").read()
    files[f"{info}/METADATA"] = "".join(
        [f"Metadata-Version: 2.1\nName: {a.distribution}\nVersion: {a.version}\nSummary: {a.summary}\n"
         "Requires-Python: >=3.11\n"] + [f"Requires-Dist: {r}\n" for r in a.requires]).encode()
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: ternary_vlm build_wheel\nRoot-Is-Purelib: false\n"
                              f"Tag: {a.tag}\n").encode()
    if a.console_script:
        files[f"{info}/entry_points.txt"] = ("[console_scripts]\n" + "".join(
            f"{s.split('=', 1)[0]} = {s.split('=', 1)[1]}\n" for s in a.console_script)).encode()
    record = [record_line(name, data) for name, data in sorted(files.items())] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in sorted(files.items()):
            info_entry = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # reproducible bytes
            info_entry.external_attr = (0o755 if name.endswith(".so") else 0o644) << 16
            z.writestr(info_entry, data, zipfile.ZIP_DEFLATED)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
