"""Chapter 11: the kernel build (tinytorch/kernels/build.py).

- the module builds and imports, with one registered family per kernels/<family>.cpp;
- the cache key follows the sources (a changed source builds into a new folder);
- a family with only a .cpp builds, a .cu is ignored without CUDA, two processes that build
  at once build once (the file lock), and a failed build shows the compiler's error;
- every kernels/*.cu compiles with nvcc for sm_80 and sm_90, and the CUDA module links
  (skipped only where nvcc is absent and the env var CI is unset: CI must check it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinytorch.kernels import build

pytestmark = pytest.mark.ch11

REPO = Path(__file__).resolve().parents[1]

HELLO_CPP = r"""
#include <pybind11/pybind11.h>
namespace py = pybind11;
int hello_add(int a, int b) { return a + b; }
void register_hello(py::module_& m) { m.def("hello_add", &hello_add); }
"""

BROKEN_CPP = r"""
#include <pybind11/pybind11.h>
namespace py = pybind11;
void register_broken(py::module_& m) { int x = this_name_does_not_exist + 1; (void)x; }
"""

LOAD_SCRIPT = """
import sys
from tinytorch.kernels import build
try:
    lib = build.load(verbose=True)
except build.KernelBuildError as e:
    print("KERNEL_BUILD_ERROR", e)
    sys.exit(3)
print("families", list(lib.families), "with_cuda", bool(lib.with_cuda))
if hasattr(lib, "hello_add"):
    print("hello_add", lib.hello_add(2, 3))
for name in sys.argv[1:]:
    assert hasattr(lib, name), f"missing {name}"
print("OK")
"""


def _env(src: Path, cache: Path, **extra) -> dict:
    env = dict(os.environ, TINYTORCH_KERNEL_SRC=str(src), TINYTORCH_KERNEL_CACHE=str(cache))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _spawn(env, *names):
    return subprocess.Popen(
        [sys.executable, "-c", LOAD_SCRIPT, *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
    )


def test_module_has_one_family_per_cpp():
    lib = build.load()
    families = sorted(p.stem for p in build.source_dir().glob("*.cpp"))
    assert sorted(lib.families) == families
    assert "layernorm" in families
    assert hasattr(lib, "layernorm_forward_cpu") and hasattr(lib, "layernorm_backward_cpu")
    assert isinstance(lib.with_cuda, bool)
    if lib.with_cuda:
        assert hasattr(lib, "layernorm_forward_cuda")


def test_cache_key_follows_the_sources(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.cpp").write_text(HELLO_CPP)
    monkeypatch.setattr(build, "SOURCE_DIR", src)
    monkeypatch.setenv("TINYTORCH_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYTORCH_NO_CUDA", "1")
    first = build.cache_dir()
    assert first.parent == tmp_path / "cache"
    assert build.cache_dir() == first  # same sources, same flags: same folder
    (src / "hello.cpp").write_text(HELLO_CPP + "\n// changed\n")
    assert build.cache_dir() != first
    (src / "hello.cpp").write_text(HELLO_CPP)
    (src / "extra.h").write_text("#pragma once\n")  # headers count too
    assert build.cache_dir() != first


def test_sources_come_from_the_env_var_and_key_the_cache(tmp_path, monkeypatch):
    """TINYTORCH_KERNEL_SRC (a learner's workspace copy of kernels/) is where every source is
    read from, at each build; a copy with a changed (say, stubbed) source gets its own folder."""
    monkeypatch.setattr(build, "SOURCE_DIR", None)
    monkeypatch.setenv("TINYTORCH_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TINYTORCH_NO_CUDA", "1")
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, text in ((a, HELLO_CPP), (b, HELLO_CPP.replace("a + b", "a - b"))):
        folder.mkdir()
        (folder / "hello.cpp").write_text(text)
    monkeypatch.setenv("TINYTORCH_KERNEL_SRC", str(a))
    assert build.source_dir() == a
    cfg_a = build.config()
    assert cfg_a["families"] == ["hello"] and cfg_a["source_dir"] == str(a)
    key_a = build.cache_dir(cfg_a)
    monkeypatch.setenv("TINYTORCH_KERNEL_SRC", str(b))
    assert build.source_dir() == b
    assert build.cache_dir() != key_a
    monkeypatch.delenv("TINYTORCH_KERNEL_SRC")
    assert build.source_dir() == REPO / "kernels"


def test_cpp_only_family_builds_once_under_the_lock(tmp_path):
    """Two processes load at once: the file lock makes one build and the other wait and import
    the result. A .cu in the folder is skipped without CUDA (and is broken here, to prove it)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.cpp").write_text(HELLO_CPP)
    (src / "never.cu").write_text("this is not CUDA\n")
    env = _env(src, tmp_path / "cache", TINYTORCH_NO_CUDA="1")
    procs = [_spawn(env, "hello_add") for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "hello_add 5" in out and "families ['hello']" in out, out
    assert sum("building kernels" in out for out in outs) == 1, outs
    (folder,) = (tmp_path / "cache").iterdir()
    assert (folder / "build.ninja").is_file()
    # a third load finds the finished module and builds nothing
    out = _spawn(env, "hello_add").communicate(timeout=600)[0]
    assert "hello_add 5" in out and "building kernels" not in out, out


def test_failed_build_shows_the_compiler_error_and_nothing_crashes(tmp_path):
    """A failed build raises KernelBuildError carrying the compiler's message (file and the
    offending name); available() is then False, build_error() says why, and the Tensor-level
    layer_norm check turns the kernel down, so F.layer_norm takes the composed path."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.cpp").write_text(BROKEN_CPP)
    script = (
        "import numpy as np, tinytorch, tinytorch.kernels as K\n"
        "from tinytorch.kernels import layernorm as L\n"
        "from tinytorch.kernels import build\n"
        "try:\n"
        "    build.load()\n"
        "    raise SystemExit('the broken source built')\n"
        "except build.KernelBuildError as e:\n"
        "    msg = str(e)\n"
        "assert 'broken.cpp' in msg and 'this_name_does_not_exist' in msg, msg\n"
        "assert not K.available()\n"
        "assert 'this_name_does_not_exist' in str(K.build_error())\n"
        "x = tinytorch.randn(3, 8)\n"
        "assert not L.supports(x)\n"
        "y = tinytorch.nn.functional.layer_norm(x, (8,))\n"
        "assert np.isfinite(y.data).all()\n"
        "print('OK')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_env(src, tmp_path / "cache", TINYTORCH_NO_CUDA="1"),
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


NVCC = build.find_nvcc() if not os.environ.get("TINYTORCH_NO_CUDA") else None


@pytest.mark.slow
@pytest.mark.skipif(
    NVCC is None and not os.environ.get("CI"),
    reason="nvcc not found (this check is required where the env var CI is set)",
)
def test_every_cu_compiles_for_sm80_and_sm90_and_links(tmp_path):
    """Every kernels/*.cu through nvcc for sm_80 and sm_90 (object files), then the whole CUDA
    module linked and imported, on a machine that may have no GPU (CI): TINYTORCH_FORCE_CUDA
    makes build.py compile the CUDA code even without a device."""
    assert NVCC is not None, "CI must have nvcc to check that the CUDA kernels compile"
    env = _env(
        build.source_dir(),
        tmp_path / "cache",
        TINYTORCH_FORCE_CUDA="1",
        TINYTORCH_CUDA_ARCH="80;90",
        TINYTORCH_NVCC=NVCC,
    )
    names = ["layernorm_forward_cuda", "layernorm_backward_cuda", "layernorm_workspace_floats"]
    proc = _spawn(env, *names)
    out = proc.communicate(timeout=1800)[0]
    assert proc.returncode == 0 and "OK" in out, out
    assert "with_cuda True" in out, out
    (folder,) = (tmp_path / "cache").iterdir()
    ninja = (folder / "build.ninja").read_text()
    for cu in sorted(build.source_dir().glob("*.cu")):
        assert (folder / f"{cu.stem}.cuda.o").is_file(), f"{cu.name} was not compiled"
    assert "code=sm_80" in ninja and "code=sm_90" in ninja
