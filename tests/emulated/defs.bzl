"""One emulated-device test = a host writer of cases + a device runner that must reproduce them."""

load("//tools:build_defs.bzl", "HOST_ONLY")

def emulated_device_test(name, writer, runner, size = "medium", writer_data = [], writer_deps = [], device_data = []):
    """writer.py (host venv) --out=<name>_cases.npz; runner.py <cases> [device_data paths] runs on the emulated
    ARM64 device (run_on_device.sh: aarch64 python + LiteRT + //cc:ternary_ops under qemu) under --config=aarch64."""
    native.py_binary(
        name = writer,
        testonly = True,
        srcs = [writer + ".py"],
        data = writer_data,
        python_version = "PY3",
        target_compatible_with = HOST_ONLY,
        deps = ["//python:ternary_vlm", "@pypi//absl_py", "@pypi//numpy"] + writer_deps,
    )
    native.genrule(
        name = name + "_cases",
        testonly = True,
        outs = [name + "_cases.npz"],
        cmd = "$(location :%s) --out=$@" % writer,
        target_compatible_with = ["@platforms//cpu:aarch64"],
        tools = [":" + writer],
    )
    native.sh_test(
        name = name,
        size = size,
        srcs = ["run_on_device.sh"],
        args = [
            "$(rootpath @arm64_sysroot//:stamp)",
            "$(rootpath :libcpuinfo_shim.so)",
            "$(rootpath fake_cpuinfo.txt)",
            "$(rootpath %s.py)" % runner,
            "$(rootpath :%s_cases)" % name,
        ] + ["$(rootpath %s)" % d for d in device_data],
        data = [
            runner + ".py",
            ":%s_cases" % name,
            "fake_cpuinfo.txt",
            ":libcpuinfo_shim.so",
            "//cc:libternary_ops.so",
            "//python:litert_runtime",
            "@arm64_sysroot//:stamp",
        ] + device_data,
        target_compatible_with = ["@platforms//cpu:aarch64"],
    )
