"""Debian's cross gcc 12 packages (g++-<triple>) as Bazel C++ toolchains, one macro per target."""

load("@bazel_tools//tools/build_defs/cc:action_names.bzl", "ACTION_NAMES")
load(
    "@bazel_tools//tools/cpp:cc_toolchain_config_lib.bzl",
    "feature",
    "flag_group",
    "flag_set",
    "tool_path",
)

_COMPILE = [
    ACTION_NAMES.c_compile,
    ACTION_NAMES.cpp_compile,
    ACTION_NAMES.cpp_header_parsing,
    ACTION_NAMES.cpp_module_compile,
    ACTION_NAMES.assemble,
    ACTION_NAMES.preprocess_assemble,
]
_CXX = [ACTION_NAMES.cpp_compile, ACTION_NAMES.cpp_header_parsing]
_LINK = [
    ACTION_NAMES.cpp_link_executable,
    ACTION_NAMES.cpp_link_dynamic_library,
    ACTION_NAMES.cpp_link_nodeps_dynamic_library,
]

def _flags(name, actions, flags, enabled = True):
    return feature(
        name = name,
        enabled = enabled,
        flag_sets = [flag_set(actions = actions, flag_groups = [flag_group(flags = flags)])],
    )

def _impl(ctx):
    triple = ctx.attr.triple
    prefix = "/usr/bin/%s-" % triple
    tools = ["ar", "cpp", "gcc", "gcov", "ld", "nm", "objcopy", "objdump", "strip"]
    features = [
        feature(name = "supports_pic", enabled = True),
        feature(name = "supports_dynamic_linker", enabled = True),
        _flags("default_compile_flags", _COMPILE, [
            "-fPIC",
            "-Wall",
            "-fno-omit-frame-pointer",
            # Keep paths in .d files as Bazel wrote them (no symlink resolution), as its host toolchain does.
            "-no-canonical-prefixes",
            "-fno-canonical-system-headers",
        ] + ctx.attr.arch_flags),
        _flags("default_cxx_flags", _CXX, ["-std=c++17"]),
        _flags("default_link_flags", _LINK, ["-lstdc++", "-lm", "-pthread"]),
        _flags("opt", _COMPILE, ["-O2", "-DNDEBUG"], enabled = False),
        _flags("dbg", _COMPILE, ["-g", "-O0"], enabled = False),
    ]
    return cc_common.create_cc_toolchain_config_info(
        ctx = ctx,
        toolchain_identifier = triple + "-gcc",
        host_system_name = "x86_64-linux-gnu",
        target_system_name = triple,
        target_cpu = ctx.attr.cpu,
        target_libc = "glibc",
        compiler = "gcc",
        abi_version = "gcc",
        abi_libc_version = "glibc",
        cxx_builtin_include_directories = [
            # gcc prints some of these as /usr/lib/gcc-cross/<triple>/12/../../../../<triple>/include
            "/usr/lib/gcc-cross/%s/12" % triple,
            "/usr/%s/include" % triple,
            "/usr/include",
        ],
        tool_paths = [tool_path(name = t, path = prefix + t) for t in tools],
        features = features,
    )

_cross_gcc_config = rule(
    implementation = _impl,
    attrs = {
        "triple": attr.string(mandatory = True),
        "cpu": attr.string(mandatory = True),
        "arch_flags": attr.string_list(),
    },
    provides = [CcToolchainConfigInfo],
)

def cross_gcc_toolchain(name, triple, cpu, constraint_cpu, arch_flags = []):
    """Declares <name> (the toolchain to register) for Debian's g++-<triple>, targeting constraint_cpu."""
    _cross_gcc_config(name = name + "_config", triple = triple, cpu = cpu, arch_flags = arch_flags)
    native.filegroup(name = name + "_empty")
    empty = ":" + name + "_empty"
    native.cc_toolchain(
        name = name + "_gcc",
        all_files = empty,
        compiler_files = empty,
        dwp_files = empty,
        linker_files = empty,
        objcopy_files = empty,
        strip_files = empty,
        supports_param_files = 1,
        toolchain_config = ":" + name + "_config",
    )
    native.toolchain(
        name = name,
        exec_compatible_with = ["@platforms//os:linux", "@platforms//cpu:x86_64"],
        target_compatible_with = ["@platforms//os:linux", constraint_cpu],
        toolchain = ":" + name + "_gcc",
        toolchain_type = "@bazel_tools//tools/cpp:toolchain_type",
    )
