"""Shared macros and constants for BUILD files."""

# Targets that need the host's Python venv (x86-64 wheels): skipped under the ARM configs.
HOST_ONLY = ["@platforms//cpu:x86_64"]

# CPU models the ARM64 tests also run on under qemu (QEMU_CPU; the default is qemu's "max"): an
# in-order core with neither the dot-product nor the int8 matrix-multiply extension, an out-of-order
# one with dot product only, and qemu's "max" with both; for each, the int8 kernels its run-time
# detection must pick or must not ("!"), checked by matmul_test.
EMULATED_AARCH64_CPUS = {
    "cortex-a53": "!int8:neon_dot,!int8:neon_i8mm",
    "cortex-a76": "int8:neon_dot,!int8:neon_i8mm",
    "max": "int8:neon_dot,int8:neon_i8mm",
}

def cc_test_on_cpus(name, srcs, deps, size = "small", copts = [], **kwargs):
    """A cc_test, plus one copy per EMULATED_AARCH64_CPUS model under --config=aarch64.

    The sources compile once (a testonly library); each copy only sets QEMU_CPU. linkstatic: linked
    dynamically, the library's test registrations would be dropped as unreferenced (0 tests run).
    """
    native.cc_library(name = name + "_lib", testonly = True, srcs = srcs, deps = deps, copts = copts, alwayslink = True)
    native.cc_test(name = name, size = size, deps = [":" + name + "_lib"], linkstatic = True, **kwargs)
    for cpu, isas in EMULATED_AARCH64_CPUS.items():
        native.cc_test(
            name = "%s_%s" % (name, cpu.replace("-", "_")),
            size = size,
            deps = [":" + name + "_lib"],
            linkstatic = True,
            env = {"QEMU_CPU": cpu, "TVLM_CPU_ISAS": isas},
            target_compatible_with = ["@platforms//cpu:aarch64"],
            **kwargs
        )

def host_py_test(name, deps = [], **kwargs):
    """A py_test on the host venv: the project package, absltest and `deps` (extra pinned requirements)."""
    native.py_test(
        name = name,
        srcs = kwargs.pop("srcs", [name + ".py"]),
        python_version = "PY3",
        target_compatible_with = HOST_ONLY,
        deps = ["//python:ternary_vlm", "@pypi//absl_py"] + deps,
        **kwargs
    )

def cli(name, module = None, deps = [], **kwargs):
    """A command-line py_binary of the ternary_vlm package: python/ternary_vlm/<module or name>.py."""
    main = "ternary_vlm/%s.py" % (module or name)
    native.py_binary(
        name = name,
        srcs = [main],
        main = main,
        python_version = "PY3",
        target_compatible_with = HOST_ONLY,
        deps = [":ternary_vlm"] + deps,
        **kwargs
    )

def cc_fuzz_test(name, srcs, deps, corpus, seconds = 20):
    """A libFuzzer-style target (LLVMFuzzerTestOneInput) run as a test, tagged "fuzz", on the host.

    In gcc builds it links //tools/fuzz:driver and runs its seed `corpus` then mutated inputs for
    `seconds` (CI runs it under --config=sanitize too); under --config=fuzz it links libFuzzer, for
    `tools/bazel run --config=fuzz //<package>:<name> -- -max_total_time=600`.
    """
    native.cc_test(
        name = name,
        size = "medium",
        srcs = srcs,
        deps = deps + select({
            "//tools/fuzz:libfuzzer": [],
            "//conditions:default": ["//tools/fuzz:driver"],
        }),
        linkopts = select({
            "//tools/fuzz:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        data = corpus,
        # libFuzzer would run seed files given one by one and stop; it takes the corpus folder from the
        # command line instead (see .bazelrc's fuzz config).
        args = select({
            "//tools/fuzz:libfuzzer": [],
            "//conditions:default": ["$(rootpath %s)" % f for f in corpus],
        }),
        env = {"FUZZ_SECONDS": str(seconds)},
        linkstatic = True,
        tags = ["fuzz"],
        target_compatible_with = HOST_ONLY,
    )

# The manylinux baseline our libraries are built for (Debian 12 toolchain and sysroot: they need GLIBC_2.34 and
# GLIBCXX_3.4.30); tools/wheel/build_wheel.py checks each wheel's library against it.
MANYLINUX = "manylinux_2_35"

def _py_wheel_impl(ctx):
    tag = "%s-%s-%s_%s" % (ctx.attr.python_tag, ctx.attr.abi, MANYLINUX, ctx.attr.arch)
    out = ctx.actions.declare_file("%s-%s-%s.whl" % (ctx.attr.distribution.replace("-", "_"), ctx.attr.version, tag))
    args = ctx.actions.args()
    args.add("--out", out)
    args.add("--distribution", ctx.attr.distribution)
    args.add("--version", ctx.attr.version)
    args.add("--tag", tag)
    args.add("--summary", ctx.attr.summary)
    args.add_all(ctx.attr.requires, before_each = "--requires")
    args.add_all(ctx.attr.console_scripts, before_each = "--console_script")
    inputs = []
    for target, dest in ctx.attr.files.items():
        files = target.files.to_list()
        if len(files) != 1:
            fail("%s: a wheel entry must be one file, got %d" % (target.label, len(files)))
        inputs.append(files[0])
        args.add("--file", "%s=%s" % (dest, files[0].path))
        if dest.endswith(".so"):
            args.add("--native", files[0].path)
    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = [args],
        inputs = inputs,
        outputs = [out],
        mnemonic = "PyWheel",
        progress_message = "Writing wheel %s" % out.short_path,
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

py_wheel = rule(
    implementation = _py_wheel_impl,
    doc = "A wheel of the given files (label -> path in the wheel) for the target CPU (arch: x86_64 / aarch64).",
    attrs = {
        "distribution": attr.string(mandatory = True),
        "version": attr.string(mandatory = True),
        "arch": attr.string(mandatory = True),
        "python_tag": attr.string(default = "py3"),
        "abi": attr.string(default = "none"),
        "summary": attr.string(),
        "requires": attr.string_list(),
        "console_scripts": attr.string_list(),
        "files": attr.label_keyed_string_dict(allow_files = True),
        "_builder": attr.label(default = "//tools/wheel:build_wheel", executable = True, cfg = "exec"),
    },
)
