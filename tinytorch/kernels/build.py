"""Build the compiled kernels (kernels/*.cpp, kernels/*.cu) into one pybind11 module, on first use.

    from tinytorch.kernels.build import load
    lib = load()          # builds if needed (seconds to a minute), then imports; cached in-process
    lib.layernorm_forward_cpu(...)

How it works (chapter 11 explains why each step is there):

1. Sources: every `kernels/<family>.cpp` defines `void register_<family>(pybind11::module_& m)`,
   which binds that family's functions. This file GENERATES the module's entry point, which
   declares and calls each `register_<family>`, so adding a family never edits a shared file.
   Each `kernels/<family>.cu` (optional) holds CUDA kernels and host launchers; it is compiled
   only when CUDA is on, and the .cpp binds the launchers under `#ifdef TT_WITH_CUDA`.
2. A cache folder keyed by a hash of everything that changes the binary: the sources and
   headers, the flags, the compilers' versions, the Python ABI, pybind11's version and the GPU
   architectures. Root: `$TINYTORCH_KERNEL_CACHE`, else `~/.cache/tinytorch/kernels`.
3. A `build.ninja` in that folder (g++ for .cpp, nvcc for .cu, one link with the static CUDA
   runtime), run by ninja, under an exclusive file lock so two processes never build at once:
   the second waits, then finds the finished module.
4. `importlib` loads the .so. A failed build raises `KernelBuildError` with the compiler output.

CUDA is compiled in only when nvcc is found AND a GPU is present (CuPy sees a device): on a
machine with nvcc but no GPU (CI, a laptop) the runtime module is CPU-only, so first use never
pays minutes of nvcc for code that cannot run there (the cache key then says "no-gpu"); the
nvcc compile check for sm_80/sm_90 is a separate test (tests/test_ch11_build.py).

Environment: TINYTORCH_NO_CUDA=1 builds the CPU kernels only; TINYTORCH_FORCE_CUDA=1 compiles the
CUDA code even without a GPU (to check the link); TINYTORCH_NVCC=/path/to/nvcc picks
the CUDA compiler; TINYTORCH_CUDA_ARCH="80;90" the architectures (default: the present GPU's,
via CuPy, else sm_80 and sm_90); TINYTORCH_CXX the C++ compiler (default g++).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

__all__ = [
    "load",
    "KernelBuildError",
    "SOURCE_DIR",
    "MODULE_NAME",
    "find_nvcc",
    "gpu_present",
    "cuda_archs",
    "cache_dir",
    "config",
    "nvcc_compile_command",
]

SOURCE_DIR = Path(
    os.environ.get("TINYTORCH_KERNEL_SRC", Path(__file__).resolve().parents[2] / "kernels")
)
MODULE_NAME = "_tinytorch_kernels"
DEFAULT_ARCHS = ("80", "90")

CXX_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", "-fvisibility=hidden", "-Wall"]
# No --use_fast_math: its approximate division, sqrt and exp break the float32 accuracy targets.
NVCC_FLAGS = ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden"]
LINK_FLAGS = ["-shared", "-fopenmp"]

_lock = threading.Lock()
_module = None
_error: Exception | None = None


class KernelBuildError(RuntimeError):
    """The kernel module failed to build; the message carries the compiler's output."""


def find_nvcc() -> str | None:
    """The CUDA compiler to use, or None (no nvcc found, or TINYTORCH_NO_CUDA=1)."""
    if os.environ.get("TINYTORCH_NO_CUDA", "") not in ("", "0"):
        return None
    env = os.environ.get("TINYTORCH_NVCC")
    if env:
        return env if Path(env).is_file() else None
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


def gpu_present() -> bool:
    """Whether CuPy sees at least one CUDA device here."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver or no GPU
        return False


def _cuda_wanted() -> str | None:
    """The nvcc to compile the runtime module's CUDA code with, or None for a CPU-only module."""
    nvcc = find_nvcc()
    if nvcc is None:
        return None
    if gpu_present() or os.environ.get("TINYTORCH_FORCE_CUDA", "") not in ("", "0"):
        return nvcc
    return None


def cuda_archs() -> list[str]:
    """Compute capabilities to compile for, e.g. ["90"]: the env override, the present GPU, or
    sm_80 + sm_90 (A100 and H100) when no GPU can be asked."""
    env = os.environ.get("TINYTORCH_CUDA_ARCH")
    if env:
        return [
            a.strip().replace("sm_", "").replace(".", "")
            for a in env.replace(",", ";").split(";")
            if a.strip()
        ]
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return [str(cupy.cuda.Device().compute_capability)]
    except Exception:  # no CuPy, no driver or no GPU: compile for the usual datacenter parts
        pass
    return list(DEFAULT_ARCHS)


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


def _ninja() -> str:
    candidates = [shutil.which("ninja"), str(Path(sys.executable).parent / "ninja")]
    try:
        import ninja

        candidates.append(str(Path(ninja.BIN_DIR) / "ninja"))
    except ImportError:
        pass
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise KernelBuildError(
        "building the tinytorch kernels needs ninja: pip install ninja "
        "(or the 'cuda'/'test' extras)"
    )


def _pybind11_include() -> str:
    try:
        import pybind11
    except ImportError as e:
        raise KernelBuildError(
            "building the tinytorch kernels needs pybind11: pip install pybind11"
        ) from e
    return pybind11.get_include()


def _gencode(archs: list[str]) -> list[str]:
    """SASS for each architecture, plus PTX for the newest so later GPUs can JIT it."""
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    newest = max(archs, key=int)
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return flags


def nvcc_compile_command(nvcc: str, src: Path, out: Path, archs: list[str]) -> list[str]:
    """The nvcc command that compiles one .cu into an object file (used by the build and CI)."""
    return [nvcc, *NVCC_FLAGS, *_gencode(archs), f"-I{SOURCE_DIR}", "-c", str(src), "-o", str(out)]


def config() -> dict:
    """Everything that determines the binary (hashed into the cache key)."""
    sources = sorted(SOURCE_DIR.glob("*.cpp")) + sorted(SOURCE_DIR.glob("*.cu"))
    if not sources:
        raise KernelBuildError(f"no kernel sources (*.cpp, *.cu) found in {SOURCE_DIR}")
    nvcc = _cuda_wanted()
    cxx = os.environ.get("TINYTORCH_CXX", "g++")
    cfg = {
        "gpu": "gpu" if gpu_present() else "no-gpu",
        "source_dir": str(SOURCE_DIR),
        "families": [p.stem for p in sorted(SOURCE_DIR.glob("*.cpp"))],
        "cu": [p.name for p in sorted(SOURCE_DIR.glob("*.cu"))] if nvcc else [],
        "cxx": cxx,
        "cxx_version": _version([cxx, "--version"]),
        "cxx_flags": CXX_FLAGS,
        "nvcc": nvcc,
        "nvcc_version": _version([nvcc, "--version"]) if nvcc else None,
        "nvcc_flags": NVCC_FLAGS if nvcc else None,
        "archs": cuda_archs() if nvcc else None,
        "python": sys.version,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        "pybind11": _pybind11_include(),
    }
    try:
        import pybind11

        cfg["pybind11_version"] = pybind11.__version__
    except ImportError:
        pass
    return cfg


def _hash(cfg: dict) -> str:
    h = hashlib.sha256(repr(sorted(cfg.items())).encode())
    files = sorted([*SOURCE_DIR.glob("*.cpp"), *SOURCE_DIR.glob("*.cu"), *SOURCE_DIR.glob("*.h")])
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(Path(__file__).read_bytes())  # the generated entry point and rules live here
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


def _cuda_home(nvcc: str) -> Path:
    """The CUDA toolkit folder (include/, lib64/) that goes with this nvcc. `nvcc` may be a
    wrapper script elsewhere (e.g. /usr/local/bin/nvcc), so check the candidates."""
    candidates = [Path(nvcc).resolve().parent.parent]
    candidates += [Path(p) for p in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if p]
    try:  # a wrapper script that execs the real nvcc: ask nvcc where it lives
        out = subprocess.run(
            [nvcc, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        )
        m = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
        if m:
            candidates.insert(0, Path(m.group(1).strip("'\"")).resolve())
    except (OSError, subprocess.SubprocessError):
        pass
    candidates += [Path("/usr/local/cuda")]
    for c in candidates:
        if (c / "include" / "cuda_runtime.h").is_file():
            return c
    raise KernelBuildError(
        f"found nvcc at {nvcc} but not the CUDA toolkit (include/cuda_runtime.h) "
        f"next to it; set CUDA_HOME, or TINYTORCH_NO_CUDA=1 to build without CUDA"
    )


def _q(s) -> str:
    """Escape a path for ninja (spaces, colons and dollars are special there)."""
    return str(s).replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def _write_ninja(bdir: Path, cfg: dict) -> Path:
    with_cuda = bool(cfg["nvcc"])
    includes = [f"-I{cfg['pybind11']}", f"-I{sysconfig.get_paths()['include']}", f"-I{SOURCE_DIR}"]
    cxx_flags = [*CXX_FLAGS, *includes]
    link = list(LINK_FLAGS)
    lines = [
        "ninja_required_version = 1.3",
        f"cxx = {cfg['cxx']}",
        f"cxx_flags = {' '.join(cxx_flags)}",
    ]
    if with_cuda:
        cuda_home = _cuda_home(cfg["nvcc"])
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
        gencode = _gencode(cfg["archs"])
        lines += [
            f"nvcc = {cfg['nvcc']}",
            "nvcc_flags = "
            + " ".join([*NVCC_FLAGS, *gencode, f"-I{SOURCE_DIR}", "-DTT_WITH_CUDA"]),
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
    for src in [entry, *sorted(SOURCE_DIR.glob("*.cpp"))]:
        obj = bdir / f"{src.stem}.o"
        objs.append(obj)
        lines.append(f"build {_q(obj)}: cxx {_q(src)}")
    if with_cuda:
        for src in sorted(SOURCE_DIR.glob("*.cu")):
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
                [_ninja(), "-C", str(bdir), "-j", jobs],
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
    # OpenMP threads that spin after each parallel region fight NumPy's BLAS threads for the
    # few cores of a laptop or CI machine (measured: steps several times slower under load);
    # sleeping idle threads cost microseconds per region. The user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
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
