"""Repository rule exposing the project venv (made by tools/setup) to Bazel.

It generates:
  //:python_toolchain   a py_runtime on the venv's interpreter
  //<name>              one py_library per pin of the lock (so targets declare what they import)
  //:python_headers     the interpreter's C headers, //:pybind11 the venv's pybind11 headers
Fails with a clear message when the venv is missing or does not match the lock.
"""

def _norm(name):
    return name.lower().replace("-", "_").replace(".", "_")

_CHECK = """
import importlib.metadata as md, sys
bad = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        found = md.version(name)
    except md.PackageNotFoundError:
        found = None
    if found != version:
        bad.append("%s (want %s, found %s)" % (name, version, found))
if bad:
    sys.exit("; ".join(bad))
import sysconfig, pybind11
print(sysconfig.get_paths()["include"])
print(pybind11.get_include())
"""

def _python_venv_impl(rctx):
    workspace = rctx.path(Label("//:WORKSPACE")).dirname
    venv = rctx.os.environ.get("TERNARY_VLM_VENV", "%s/.venv" % workspace)
    python = rctx.path(venv + "/bin/python")
    lock = rctx.path(rctx.attr.lock)
    if not python.exists:
        fail("no Python venv at %s: run tools/setup (or any tools/bazel command) first" % venv)
    result = rctx.execute([python, "-c", _CHECK, lock])
    if result.return_code != 0:
        fail("venv %s does not match %s: %s -- run tools/setup" % (venv, rctx.attr.lock, result.stderr.strip()))
    include_dir, pybind11_dir = result.stdout.strip().split("\n")
    rctx.symlink(include_dir, "python_include")
    rctx.symlink(pybind11_dir, "pybind11_include")

    # Targets that use the venv depend on the lock's content, so a new lock re-runs them.
    rctx.symlink(lock, "requirements_lock.txt")

    build = [
        'load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")',
        'package(default_visibility = ["//visibility:public"])',
        'exports_files(["requirements_lock.txt"])',
        'py_runtime(name = "py3_runtime", interpreter_path = "%s", python_version = "PY3", ' % python +
        # The launcher stub itself runs on the venv's interpreter, not whatever `python` is on PATH.
        'stub_shebang = "#!%s")' % python,
        'py_runtime_pair(name = "runtime_pair", py3_runtime = ":py3_runtime")',
        'toolchain(name = "python_toolchain", toolchain = ":runtime_pair", ' +
        'toolchain_type = "@bazel_tools//tools/python:toolchain_type")',
        'cc_library(name = "python_headers", hdrs = glob(["python_include/**/*.h"]), ' +
        'includes = ["python_include"])',
        'cc_library(name = "pybind11", hdrs = glob(["pybind11_include/**/*.h"]), ' +
        'includes = ["pybind11_include"], deps = [":python_headers"])',
    ]
    rctx.file("BUILD", "\n".join(build) + "\n")

    for line in rctx.read(lock).splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name = _norm(line.split("==")[0])
        rctx.file(name + "/BUILD", "\n".join([
            'package(default_visibility = ["//visibility:public"])',
            "# %s, installed in the venv." % line,
            'py_library(name = "%s", data = ["//:requirements_lock.txt"])' % name,
        ]) + "\n")

python_venv = repository_rule(
    implementation = _python_venv_impl,
    attrs = {"lock": attr.label(allow_single_file = True, mandatory = True)},
    environ = ["TERNARY_VLM_VENV"],
)
