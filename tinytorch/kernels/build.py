"""Build the compiled kernels (kernels/*.cpp, kernels/*.cu) into one pybind11 module, on first use.

    from tinytorch.kernels.build import load
    lib = load()          # builds if needed (seconds to a minute), then imports; cached in-process
    lib.layernorm_forward_cpu(...)

How it works (chapter 11 explains why each step is there):

1. Sources: every `<family>.cpp` of the source folder defines
   `void register_<family>(pybind11::module_& m)`, which binds that family's functions. This
   file GENERATES the module's entry point, which declares and calls each `register_<family>`,
   so adding a family never edits a shared file. Each `<family>.cu` (optional) holds CUDA
   kernels and host launchers; it is compiled only when CUDA is on, and the .cpp binds the
   launchers under `#ifdef TT_WITH_CUDA`.
   The source folder is `$TINYTORCH_KERNEL_SRC` (read at each build: a learner's workspace
   copy of kernels/, say), else the repository's kernels/. Every .cpp, .cu and .h is read from
   there; nothing else is compiled.
2. A cache folder keyed by a hash of everything that changes the binary: the sources' and
   headers' contents (so an edited or stubbed copy builds into its own folder), the source
   folder, the flags, the compilers' versions, the Python ABI, pybind11's version and the GPU
   architectures. Root: `$TINYTORCH_KERNEL_CACHE`, else `~/.cache/tinytorch/kernels`.
3. A `build.ninja` in that folder (g++ for .cpp, nvcc for .cu, one link with the static CUDA
   runtime), run by ninja, under an exclusive file lock so two processes never build at once:
   the second waits, then finds the finished module.
4. `importlib` loads the .so. A failed build raises `KernelBuildError` with the compiler output.

Which compilers, architectures and flags: tinytorch/kernels/toolchain.py (and its environment
variables).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from . import toolchain
from .toolchain import KernelBuildError, cuda_archs, find_nvcc, gpu_present

__all__ = [
    "load",
    "KernelBuildError",
    "source_dir",
    "MODULE_NAME",
    "find_nvcc",
    "gpu_present",
    "cuda_archs",
    "cache_dir",
    "config",
    "nvcc_compile_command",
]

REPO_KERNELS = Path(__file__).resolve().parents[2] / "kernels"
# A folder to build from instead of source_dir()'s choice (tests set it); None = the usual rule.
SOURCE_DIR: Path | None = None
MODULE_NAME = "_tinytorch_kernels"

_lock = threading.Lock()
_module = None
_error: Exception | None = None


def source_dir() -> Path:
    """The folder the kernels build from: SOURCE_DIR if set, else $TINYTORCH_KERNEL_SRC, else the
    repository's kernels/."""
    if SOURCE_DIR is not None:
        return Path(SOURCE_DIR)
    env = os.environ.get("TINYTORCH_KERNEL_SRC")
    return Path(env) if env else REPO_KERNELS


def nvcc_compile_command(nvcc: str, src: Path, out: Path, archs: list[str]) -> list[str]:
    """The nvcc command that compiles one .cu into an object file."""
    flags = [*toolchain.NVCC_FLAGS, *toolchain.gencode(archs), f"-I{source_dir()}"]
    return [nvcc, *flags, "-c", str(src), "-o", str(out)]


def config() -> dict:
    """Everything that determines the binary (hashed into the cache key)."""
    src = source_dir()
    sources = sorted(src.glob("*.cpp")) + sorted(src.glob("*.cu"))
    if not sources:
        raise KernelBuildError(f"no kernel sources (*.cpp, *.cu) found in {src}")
    nvcc = toolchain.cuda_wanted()
    cxx = toolchain.cxx()
    cfg = {
        "gpu": "gpu" if gpu_present() else "no-gpu",
        "source_dir": str(src),
        "families": [p.stem for p in sorted(src.glob("*.cpp"))],
        "cu": [p.name for p in sorted(src.glob("*.cu"))] if nvcc else [],
        "cxx": cxx,
        "cxx_version": toolchain.tool_version([cxx, "--version"]),
        "cxx_flags": toolchain.CXX_FLAGS,
        "nvcc": nvcc,
        "nvcc_version": toolchain.tool_version([nvcc, "--version"]) if nvcc else None,
        "nvcc_flags": toolchain.NVCC_FLAGS if nvcc else None,
        "archs": cuda_archs() if nvcc else None,
        "python": sys.version,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "pybind11": toolchain.pybind11_include(),
    }
    try:
        import pybind11

        cfg["pybind11_version"] = pybind11.__version__
    except ImportError:
        pass
    return cfg


def _hash(cfg: dict) -> str:
    h = hashlib.sha256(repr(sorted(cfg.items())).encode())
    src = Path(cfg["source_dir"])
    files = sorted([*src.glob("*.cpp"), *src.glob("*.cu"), *src.glob("*.h")])
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    # the generated entry point, the ninja rules and the flags live in these two files
    h.update(Path(__file__).read_bytes())
    h.update(Path(toolchain.__file__).read_bytes())
    return h.hexdigest()[:20]


def cache_root() -> Path:
    env = os.environ.get("TINYTORCH_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tinytorch" / "kernels"


def cache_dir(cfg: dict | None = None) -> Path:
    """The folder this configuration builds into."""
    return cache_root() / _hash(config() if cfg is None else cfg)


def _entry_source(families: list[str], with_cuda: bool, archs) -> str:
    """The generated module entry: declares and calls register_<family>(m) for each family."""
    decls = "\n".join(f"void register_{f}(py::module_& m);" for f in families)
    calls = "\n".join(f"    register_{f}(m);" for f in families)
    fams = ", ".join(f'"{f}"' for f in families)
    archs_txt = ", ".join(f'"{a}"' for a in (archs or []))
    return f"""// Generated by tinytorch/kernels/build.py: do not edit.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <string>
#include <vector>
namespace py = pybind11;
{decls}
PYBIND11_MODULE({MODULE_NAME}, m) {{
    m.doc() = "tinytorch's compiled kernels (generated entry point)";
    m.attr("with_cuda") = {"true" if with_cuda else "false"};
    m.attr("families") = std::vector<std::string>{{{fams}}};
    m.attr("cuda_archs") = std::vector<std::string>{{{archs_txt}}};
{calls}
}}
"""


def _q(s) -> str:
    """Escape a path for ninja (spaces, colons and dollars are special there)."""
    return str(s).replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def _write_ninja(bdir: Path, cfg: dict) -> Path:
    with_cuda = bool(cfg["nvcc"])
    includes = [
        f"-I{cfg['pybind11']}",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{cfg['source_dir']}",
    ]
    cxx_flags = [*toolchain.CXX_FLAGS, *includes]
    link = list(toolchain.LINK_FLAGS)
    lines = [
        "ninja_required_version = 1.3",
        f"cxx = {cfg['cxx']}",
        f"cxx_flags = {' '.join(cxx_flags)}",
    ]
    if with_cuda:
        cuda_home = toolchain.cuda_home(cfg["nvcc"])
        cuda_inc = cuda_home / "include"
        lib = next(
            (
                d
                for d in (cuda_home / "lib64", cuda_home / "lib")
                if (d / "libcudart_static.a").is_file()
            ),
            cuda_home / "lib64",
        )
        cxx_flags += ["-DTT_WITH_CUDA", f"-I{cuda_inc}"]
        lines[-1] = f"cxx_flags = {' '.join(cxx_flags)}"
        gencode = toolchain.gencode(cfg["archs"])
        lines += [
            f"nvcc = {cfg['nvcc']}",
            "nvcc_flags = "
            + " ".join(
                [*toolchain.NVCC_FLAGS, *gencode, f"-I{cfg['source_dir']}", "-DTT_WITH_CUDA"]
            ),
        ]
        link += [f"-L{lib}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
    lines += [
        f"link_flags = {' '.join(link)}",
        "",
        "rule cxx",
        "  command = $cxx $cxx_flags -c $in -o $out",
        "  description = g++ $in",
        "",
    ]
    if with_cuda:
        lines += [
            "rule nvcc",
            "  command = $nvcc $nvcc_flags -c $in -o $out",
            "  description = nvcc $in",
            "",
        ]
    lines += [
        "rule link",
        "  command = $cxx $in $link_flags -o $out",
        "  description = link $out",
        "",
    ]
    objs = []
    entry = bdir / "module_entry.cpp"
    entry.write_text(_entry_source(cfg["families"], with_cuda, cfg["archs"]))
    for src in [entry, *sorted(Path(cfg["source_dir"]).glob("*.cpp"))]:
        obj = bdir / f"{src.stem}.o"
        objs.append(obj)
        lines.append(f"build {_q(obj)}: cxx {_q(src)}")
    if with_cuda:
        for src in sorted(Path(cfg["source_dir"]).glob("*.cu")):
            obj = bdir / f"{src.stem}.cuda.o"
            objs.append(obj)
            lines.append(f"build {_q(obj)}: nvcc {_q(src)}")
    so = bdir / f"{MODULE_NAME}{cfg['ext_suffix']}"
    lines += ["", f"build {_q(so)}: link {' '.join(_q(o) for o in objs)}", f"default {_q(so)}", ""]
    (bdir / "build.ninja").write_text("\n".join(lines))
    return so


def _build(bdir: Path, cfg: dict, verbose: bool) -> Path:
    import fcntl

    bdir.mkdir(parents=True, exist_ok=True)
    so = bdir / f"{MODULE_NAME}{cfg['ext_suffix']}"
    stamp = bdir / "ok"
    with open(bdir / "build.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # a second process waits here, then finds the stamp
        try:
            if stamp.exists() and so.exists():
                return so
            _write_ninja(bdir, cfg)
            if verbose:
                print(
                    f"tinytorch: building kernels in {bdir} (CUDA: {bool(cfg['nvcc'])})", flush=True
                )
            jobs = str(max(1, min(os.cpu_count() or 1, 8)))
            proc = subprocess.run(
                [toolchain.ninja(), "-C", str(bdir), "-j", jobs],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if verbose and proc.stdout:
                print(proc.stdout, flush=True)
            if proc.returncode != 0 or not so.exists():
                raise KernelBuildError(
                    f"building the tinytorch kernels failed (ninja exit code {proc.returncode}) "
                    f"in {bdir}; compiler output:\n{proc.stdout}"
                )
            stamp.write_text(repr(cfg))
            return so
        finally:
            fcntl.flock(lockf, fcntl.LOCK_UN)


def _import(so: Path):
    # OMP_WAIT_POLICY (passive: idle OpenMP threads sleep instead of spinning against NumPy's
    # BLAS threads) is set by tinytorch/__init__.py, before any OpenMP runtime can start
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(so))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, so, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def load(verbose: bool = False):
    """The compiled kernel module: built on first use (under a file lock), then imported and
    cached in this process. Raises KernelBuildError (with the compiler output) on failure; the
    failure is remembered, so later calls raise the same error without rebuilding."""
    global _module, _error
    with _lock:
        if _module is not None:
            return _module
        if _error is not None:
            raise _error
        try:
            cfg = config()
            so = _build(cache_dir(cfg), cfg, verbose)
            _module = _import(so)
        except KernelBuildError as e:
            _error = e
            raise
        except Exception as e:  # import errors (missing symbols, ABI) are build errors too
            _error = KernelBuildError(
                f"loading the tinytorch kernels failed: {type(e).__name__}: {e}"
            )
            raise _error from e
        return _module
