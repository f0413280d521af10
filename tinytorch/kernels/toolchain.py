"""The tools that build the kernels (used by tinytorch/kernels/build.py): which compilers, which
GPU architectures, which flags.

CUDA is compiled in only when nvcc is found AND a GPU is present (CuPy sees a device): on a
machine with nvcc but no GPU (CI, a laptop) the runtime module is CPU-only, so first use never
pays minutes of nvcc for code that cannot run there; the nvcc compile check for sm_80/sm_90 is a
separate test (tests/test_ch11_build.py).

Environment: TINYTORCH_NO_CUDA=1 builds the CPU kernels only; TINYTORCH_FORCE_CUDA=1 compiles the
CUDA code even without a GPU (to check the link); TINYTORCH_NVCC=/path/to/nvcc picks the CUDA
compiler; TINYTORCH_CUDA_ARCH="80;90" the architectures (default: the present GPU's, via CuPy,
else sm_80 and sm_90); TINYTORCH_CXX the C++ compiler (default g++).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "KernelBuildError",
    "CXX_FLAGS",
    "NVCC_FLAGS",
    "LINK_FLAGS",
    "find_nvcc",
    "gpu_present",
    "cuda_wanted",
    "cuda_archs",
    "cuda_home",
    "cxx",
    "gencode",
    "tool_version",
    "ninja",
    "pybind11_include",
]

DEFAULT_ARCHS = ("80", "90")
CXX_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", "-fvisibility=hidden", "-Wall"]
# No --use_fast_math: its approximate division, sqrt and exp break the float32 accuracy targets.
NVCC_FLAGS = ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden"]
LINK_FLAGS = ["-shared", "-fopenmp"]


class KernelBuildError(RuntimeError):
    """The kernel module failed to build; the message carries the compiler's output."""


def cxx() -> str:
    """The C++ compiler (TINYTORCH_CXX, default g++)."""
    return os.environ.get("TINYTORCH_CXX", "g++")


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


def cuda_wanted() -> str | None:
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


def gencode(archs: list[str]) -> list[str]:
    """SASS for each architecture, plus PTX for the newest so later GPUs can JIT it."""
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    newest = max(archs, key=int)
    flags += ["-gencode", f"arch=compute_{newest},code=compute_{newest}"]
    return flags


def tool_version(cmd: list[str]) -> str:
    """What `cmd` (e.g. [cxx, "--version"]) prints: part of the cache key."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"


def ninja() -> str:
    """The ninja executable: on PATH, next to Python, or from the ninja package."""
    candidates = [shutil.which("ninja"), str(Path(sys.executable).parent / "ninja")]
    try:
        import ninja as ninja_pkg

        candidates.append(str(Path(ninja_pkg.BIN_DIR) / "ninja"))
    except ImportError:
        pass
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise KernelBuildError(
        "building the tinytorch kernels needs ninja: pip install ninja "
        "(or the 'cuda'/'test' extras)"
    )


def pybind11_include() -> str:
    try:
        import pybind11
    except ImportError as e:
        raise KernelBuildError(
            "building the tinytorch kernels needs pybind11: pip install pybind11"
        ) from e
    return pybind11.get_include()


def cuda_home(nvcc: str) -> Path:
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
