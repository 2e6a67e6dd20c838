"""Debian's aarch64-linux-gnu gcc 12 (package g++-aarch64-linux-gnu) as a Bazel cc toolchain."""

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
    prefix = "/usr/bin/aarch64-linux-gnu-"
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
        ]),
        _flags("default_cxx_flags", _CXX, ["-std=c++17"]),
        _flags("default_link_flags", _LINK, ["-lstdc++", "-lm", "-pthread"]),
        feature(
            name = "opt",
            flag_sets = [flag_set(actions = _COMPILE, flag_groups = [flag_group(flags = ["-O2", "-DNDEBUG"])])],
        ),
        feature(
            name = "dbg",
            flag_sets = [flag_set(actions = _COMPILE, flag_groups = [flag_group(flags = ["-g", "-O0"])])],
        ),
    ]
    return cc_common.create_cc_toolchain_config_info(
        ctx = ctx,
        toolchain_identifier = "aarch64-linux-gnu-gcc",
        host_system_name = "x86_64-linux-gnu",
        target_system_name = "aarch64-linux-gnu",
        target_cpu = "aarch64",
        target_libc = "glibc",
        compiler = "gcc",
        abi_version = "gcc",
        abi_libc_version = "glibc",
        cxx_builtin_include_directories = [
            # gcc prints some of these as /usr/lib/gcc-cross/.../12/../../../../aarch64-linux-gnu/include
            "/usr/lib/gcc-cross/aarch64-linux-gnu/12",
            "/usr/aarch64-linux-gnu/include",
            "/usr/include",
        ],
        tool_paths = [tool_path(name = t, path = prefix + t) for t in tools],
        features = features,
    )

aarch64_cc_toolchain_config = rule(
    implementation = _impl,
    attrs = {},
    provides = [CcToolchainConfigInfo],
)
