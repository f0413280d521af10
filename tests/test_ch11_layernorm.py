"""Chapter 11, part 1: the fused LayerNorm kernels (kernels/layernorm.{cpp,cu}).

Every kernel version, on the CPU and (where present) the GPU, against a float64 NumPy
reference: fresh random inputs (non-zero mean, so a one-pass sum/sum-of-squares variance would
show), every output and workspace poisoned with NaN before the call, C in {1, 7, 768, 1023,
4096, 4097} and rows in {1, 3, 1000}: y, mean, rstd, dx, dweight, dbias. Error measure: the
largest absolute error relative to the largest reference entry (normwise), within 1e-5 for
float32; C = 1 has an all-zero dx, so there the bound is 1e-5 absolute.

Then the autograd Function against torch.nn.functional.layer_norm (float32), the switch that
forces the composed path, determinism of the backward, and bad input (a clear error or the
documented fallback, never a crash).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch
import tinytorch.kernels
from tinytorch import backend
from tinytorch.kernels import layernorm as L

pytestmark = pytest.mark.ch11

REPO = Path(__file__).resolve().parents[1]
SIZES_C = (1, 7, 768, 1023, 4096, 4097)
SIZES_N = (1, 3, 1000)
EPS = 1e-5
RTOL = 1e-5


def reference(x, w, b, dy, eps=EPS):
    """float64 LayerNorm over the last dim and its gradients (x (N, C), w and b (C,)): the
    library's one reference, itself checked against torch below."""
    return L.reference(x, w, b, dy, eps)


@pytest.mark.exercise("layernorm_reference")
@pytest.mark.parametrize("N,C", [(1, 1), (3, 7), (50, 64)])
def test_reference_matches_torch_float64(N, C):
    """The float64 reference itself, against torch's layer_norm and autograd in float64."""
    rng = np.random.default_rng()
    x = rng.standard_normal((N, C)) * rng.uniform(0.5, 3) + rng.uniform(-4, 4)
    w, b, dy = 1 + 0.5 * rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal((N, C))
    y, mean, rstd, dx, dw, db = L.reference(x, w, b, dy, EPS)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = torch.nn.functional.layer_norm(xt, (C,), wt, bt, EPS)
    yt.backward(torch.tensor(dy))
    var, mu = torch.var_mean(torch.tensor(x), -1, unbiased=False)
    assert_close(y, yt, msg="y")
    assert_close(mean, mu, msg="mean")
    assert_close(rstd, 1 / torch.sqrt(var + EPS), msg="rstd")
    assert_close(dx, xt.grad, atol=1e-7, msg="dx")  # C = 1: dx is 0 up to rounding * rstd
    assert_close(dw, wt.grad, atol=1e-7, msg="dweight")
    assert_close(db, bt.grad, msg="dbias")


@functools.cache
def case(N, C):
    """Fresh random inputs for one shape (drawn once per session, not seeded) and the
    reference results."""
    rng = np.random.default_rng()
    x = (rng.standard_normal((N, C)) * rng.uniform(0.5, 3) + rng.uniform(-4, 4)).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    dy = rng.standard_normal((N, C)).astype(np.float32)
    return (x, w, b, dy), reference(x, w, b, dy)


def check(name, got, want, N, C):
    got = to_numpy(got).astype(np.float64)
    assert got.shape == want.shape, f"{name} (N={N}, C={C}): shape {got.shape} != {want.shape}"
    assert np.isfinite(got).all(), f"{name} (N={N}, C={C}): NaN/inf in the result (unwritten?)"
    scale = max(float(np.abs(want).max()), 1.0 if C == 1 else 0.0, 1e-30)
    err = float(np.abs(got - want).max()) / scale
    assert err <= RTOL, f"{name} (N={N}, C={C}): relative error {err:.2e} > {RTOL:g}"


class PoisonXP:
    """An array module whose `empty` returns NaN-filled arrays: every output and workspace the
    kernel wrappers allocate starts as NaN, so an element the kernel forgets to write shows."""

    def __init__(self, xp, counter):
        self._xp, self._counter = xp, counter

    def empty(self, shape, dtype=np.float64, *args, **kwargs):
        self._counter.append(shape)
        return self._xp.full(shape, np.nan, dtype=dtype)

    def __getattr__(self, name):
        return getattr(self._xp, name)


@pytest.fixture
def poisoned(monkeypatch):
    """Patch backend.get_xp so the kernel wrappers allocate NaN-filled outputs; yields the list
    of allocated shapes (to check the poisoning really happened)."""
    real, calls = backend.get_xp, []
    monkeypatch.setattr(backend, "get_xp", lambda device: PoisonXP(real(device), calls))
    return calls


def kernel_versions():
    # the CPU kernel's backward (kernels/layernorm.cpp) is exercise layernorm_backward_cpp
    cpp = pytest.mark.exercise("layernorm_backward_cpp")
    params = [pytest.param("cpu", v, id=f"cpu-v{v}", marks=cpp) for v in L.CPU_VERSIONS]
    for v in L.CUDA_VERSIONS:
        params.append(
            pytest.param(
                "cuda",
                v,
                id=f"cuda-v{v}",
                marks=[
                    pytest.mark.cuda,
                    pytest.mark.skipif(
                        not backend.cuda_is_available(), reason="no CUDA GPU/CuPy on this machine"
                    ),
                ],
            )
        )
    return params


@pytest.mark.parametrize("device,version", kernel_versions())
@pytest.mark.parametrize("N", SIZES_N)
@pytest.mark.parametrize("C", SIZES_C)
def test_kernel_matches_float64_reference(device, version, N, C, poisoned):
    (x, w, b, dy), (y_r, mean_r, rstd_r, dx_r, dw_r, db_r) = case(N, C)
    d = [backend.to_device(a, device) for a in (x, w, b, dy)]
    y, mean, rstd = L.forward(d[0], d[1], d[2], EPS, version=version)
    dx, dw, db = L.backward(d[3], d[0], d[1], mean, rstd, version=version)
    assert len(poisoned) >= 6, "the NaN poisoning did not reach the kernel's outputs"
    check("y", y, y_r, N, C)
    check("mean", mean, mean_r, N, C)
    check("rstd", rstd, rstd_r, N, C)
    check("dx", dx, dx_r, N, C)
    check("dweight", dw, dw_r, N, C)
    check("dbias", db, db_r, N, C)


@pytest.mark.parametrize("device,version", kernel_versions())
def test_backward_is_deterministic(device, version):
    """Same inputs, same bits: no floating-point atomics in the dweight/dbias reduction."""
    (x, w, b, dy), _ = case(1000, 768)
    d = [backend.to_device(a, device) for a in (x, w, b, dy)]
    _, mean, rstd = L.forward(d[0], d[1], d[2], EPS, version=version)
    first = [to_numpy(a) for a in L.backward(d[3], d[0], d[1], mean, rstd, version=version)]
    for _ in range(3):
        again = [to_numpy(a) for a in L.backward(d[3], d[0], d[1], mean, rstd, version=version)]
        for a, b_ in zip(first, again):
            np.testing.assert_array_equal(a, b_)


_THREADS_SCRIPT = """
import sys, numpy as np
from tinytorch.kernels import layernorm as L
rng = np.random.default_rng(int(sys.argv[1]))
x = rng.standard_normal((777, 300)).astype(np.float32)
dy = rng.standard_normal((777, 300)).astype(np.float32)
w = rng.standard_normal(300).astype(np.float32)
b = np.zeros(300, np.float32)
y, m, r = L.forward(x, w, b, 1e-5)
dx, dw, db = L.backward(dy, x, w, m, r)
sys.stdout.write(dw.tobytes().hex() + db.tobytes().hex())
"""


def test_cpu_backward_does_not_depend_on_thread_count():
    """The CPU kernel splits rows into a fixed number of chunks, not one per thread, so the
    dweight/dbias bits are the same with 1 or 2 OpenMP threads."""
    seed = str(np.random.default_rng().integers(1 << 30))
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONPATH=str(REPO))
        proc = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT, seed],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1]


# ---- the autograd Function, against PyTorch --------------------------------------------------
AFFINE = ["weight+bias", "weight", "none"]


@pytest.mark.exercise("layernorm_function_backward")
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("shape", [(2, 3, 768), (5, 7), (4, 1), (1, 4097)])
def test_function_matches_torch(device, shape, affine):
    rng = np.random.default_rng()
    C = shape[-1]
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    xt = tinytorch.tensor(x, device=device, requires_grad=True)
    wt = tinytorch.tensor(w, device=device, requires_grad=True) if affine != "none" else None
    bt = tinytorch.tensor(b, device=device, requires_grad=True) if affine == "weight+bias" else None
    y = L.layer_norm(xt, wt, bt, EPS)
    assert isinstance(y._ctx, L.LayerNormFunction)
    (y * tinytorch.tensor(g, device=device)).sum().backward()

    xr = torch.tensor(x, requires_grad=True)
    wr = torch.tensor(w, requires_grad=True) if wt is not None else None
    br = torch.tensor(b, requires_grad=True) if bt is not None else None
    yr = torch.nn.functional.layer_norm(xr, (C,), wr, br, EPS)
    (yr * torch.tensor(g)).sum().backward()
    # two float32 computations of the same sums: 1e-5 relative, 1e-5 absolute for the entries
    # that cancel to about zero. At C = 1 the exact xhat, dx and dweight are 0, and torch
    # returns float32 rounding noise times rstd = 1/sqrt(eps) ~ 316 (up to ~2e-4 in dweight):
    # there the bound is 1e-3 absolute (the kernel itself is checked against float64 above).
    atol = 1e-3 if C == 1 else 1e-5
    assert_close(y, yr, atol=atol, msg="y")
    assert_close(xt.grad, xr.grad, atol=atol, msg="dx")
    if wt is not None:
        assert_close(wt.grad, wr.grad, atol=atol, msg="dweight")
    if bt is not None:
        assert_close(bt.grad, br.grad, atol=atol, msg="dbias")


@pytest.mark.exercise("layernorm_function_backward")
def test_function_gradient_only_to_x(device):
    """weight and bias constants (requires_grad=False): only x gets a gradient."""
    rng = np.random.default_rng()
    x = tinytorch.tensor(
        rng.standard_normal((6, 33)).astype(np.float32), device=device, requires_grad=True
    )
    w = tinytorch.tensor(rng.standard_normal(33).astype(np.float32), device=device)
    b = tinytorch.tensor(rng.standard_normal(33).astype(np.float32), device=device)
    L.layer_norm(x, w, b, EPS).sum().backward()
    assert x.grad is not None and w.grad is None and b.grad is None
    # sum over the row of a LayerNorm output is constant in x... up to the weight: check torch
    xr = torch.tensor(to_numpy(x), requires_grad=True)
    torch.nn.functional.layer_norm(
        xr, (33,), torch.tensor(to_numpy(w)), torch.tensor(to_numpy(b)), EPS
    ).sum().backward()
    assert_close(x.grad, xr.grad, atol=1e-5)


def test_non_contiguous_input_is_copied(device):
    rng = np.random.default_rng()
    base = rng.standard_normal((20, 64)).astype(np.float32)
    x = tinytorch.tensor(base, device=device)
    xt = x.transpose(0, 1) if hasattr(x, "transpose") else x.T  # (64, 20), not contiguous
    assert not xt.data.flags.c_contiguous
    w = tinytorch.tensor(np.ones(20, np.float32), device=device)
    y = L.layer_norm(xt, w, None, EPS)
    ref = torch.nn.functional.layer_norm(torch.tensor(base.T.copy()), (20,), eps=EPS)
    assert_close(y, ref, atol=1e-5)


# ---- dispatch, the switch, nn.LayerNorm --------------------------------------------------------
def test_dispatch_and_composed_switch(device):
    rng = np.random.default_rng()
    x = tinytorch.tensor(rng.standard_normal((4, 9, 48)).astype(np.float32), device=device)
    w = tinytorch.tensor(rng.standard_normal(48).astype(np.float32), device=device)
    b = tinytorch.tensor(rng.standard_normal(48).astype(np.float32), device=device)
    assert L.supports(x, w, b)
    fused = L.dispatch(x, (48,), w, b, EPS)
    assert fused is not None
    with tinytorch.kernels.composed():
        assert not tinytorch.kernels.fused_enabled()
        assert L.supports(x, w, b)  # only dispatch reads the switch
        assert L.dispatch(x, (48,), w, b, EPS) is None
        composed = tinytorch.nn.functional.layer_norm(x, (48,), w, b, EPS)
        assert not isinstance(composed._ctx, L.LayerNormFunction)
    assert tinytorch.kernels.fused_enabled()
    assert_close(fused, composed, atol=1e-5)


def test_nn_layernorm_uses_the_fused_function(device):
    """F.layer_norm and nn.LayerNorm go through the kernel where supported (F.layer_norm calls
    tinytorch.kernels.layernorm.dispatch), and match the composed path."""
    rng = np.random.default_rng()
    ln = tinytorch.nn.LayerNorm(96, device=device)
    ln.weight.data[...] = backend.to_device(rng.standard_normal(96).astype(np.float32), device)
    x = tinytorch.tensor(
        rng.standard_normal((3, 5, 96)).astype(np.float32), device=device, requires_grad=True
    )
    y = ln(x)
    assert isinstance(y._ctx, L.LayerNormFunction)
    y.sum().backward()
    gx, gw = to_numpy(x.grad), to_numpy(ln.weight.grad)
    x.grad = ln.weight.grad = ln.bias.grad = None
    tinytorch.kernels.set_fused(False)
    try:
        y2 = ln(x)
        assert not isinstance(y2._ctx, L.LayerNormFunction)
        y2.sum().backward()
    finally:
        tinytorch.kernels.set_fused(True)
    assert_close(y, y2, atol=1e-5)
    assert_close(gx, x.grad, atol=1e-5)
    assert_close(gw, ln.weight.grad, atol=1e-5)


# ---- bad input: a clear error or the documented fallback, never a crash ---------------------
def _arrays(device, N=4, C=8, dtype=np.float32):
    xp = backend.get_xp(device)
    x = xp.asarray(np.random.default_rng().standard_normal((N, C)), dtype=dtype)
    return x, xp.ones((C,), dtype), xp.zeros((C,), dtype)


@pytest.mark.exercise("input_checks")
def test_raw_rejects_bad_input(device):
    x, w, b = _arrays(device)
    with pytest.raises(TypeError, match="float32"):
        L.forward(x.astype(np.float64), w, b)
    with pytest.raises(TypeError, match="float32"):
        L.forward(x, w.astype(np.float64), b)
    with pytest.raises(ValueError, match="contiguous"):
        L.forward(
            x2 := backend.get_xp(device).asfortranarray(_arrays(device, 8, 8)[0]),
            *_arrays(device, 8, 8)[1:],
        )
    assert not x2.flags.c_contiguous
    with pytest.raises(ValueError, match="shape"):
        L.forward(x, w[:5], b)
    with pytest.raises(ValueError, match="empty"):
        L.forward(x[:0], w, b)
    with pytest.raises(ValueError, match="2-D"):
        L.forward(x.reshape(2, 2, 8), w, b)
    with pytest.raises(ValueError, match="version"):
        L.forward(x, w, b, version=99)
    with pytest.raises(TypeError):
        L.forward(to_numpy(x).tolist(), w, b)
    y, mean, rstd = L.forward(x, w, b)
    with pytest.raises(ValueError, match="shape"):
        L.backward(y[:2], x, w, mean, rstd)
    with pytest.raises(ValueError, match="shape"):
        L.backward(y, x, w, mean[:2], rstd)


@pytest.mark.cuda
@pytest.mark.skipif(not backend.cuda_is_available(), reason="no CUDA GPU/CuPy on this machine")
def test_raw_rejects_mixed_devices():
    x, w, b = _arrays("cuda")
    with pytest.raises(ValueError, match="device|cpu"):
        L.forward(x, to_numpy(w), b)


def test_tensor_level_fallbacks(device):
    """What supports() turns away goes the composed way through F.layer_norm, correctly."""
    F = tinytorch.nn.functional
    rng = np.random.default_rng()
    x64 = tinytorch.tensor(rng.standard_normal((3, 10)), device=device)  # float64
    assert not L.supports(x64)
    y = F.layer_norm(x64, (10,), eps=EPS)
    ref = torch.nn.functional.layer_norm(torch.tensor(to_numpy(x64)), (10,), eps=EPS)
    assert_close(y, ref)
    empty = tinytorch.zeros(0, 10, device=device)
    assert not L.supports(empty)
    assert F.layer_norm(empty, (10,)).shape == (0, 10)
    x = tinytorch.tensor(rng.standard_normal((3, 10)).astype(np.float32), device=device)
    bad_w = tinytorch.ones(9, device=device)
    assert not L.supports(x, bad_w)
    with pytest.raises((ValueError, RuntimeError)):
        F.layer_norm(x, (10,), bad_w)


def test_misaligned_rows_fall_back(device):
    """A view that starts one float into an allocation cannot use float4 loads: the default
    version (4) must notice and run version 3, with the same results."""
    xp = backend.get_xp(device)
    rng = np.random.default_rng()
    x = rng.standard_normal((5, 1024)).astype(np.float32)
    w = rng.standard_normal(1024).astype(np.float32)
    b = rng.standard_normal(1024).astype(np.float32)
    g = rng.standard_normal((5, 1024)).astype(np.float32)
    buf = xp.empty(5 * 1024 + 1, np.float32)
    xs = buf[1:].reshape(5, 1024)  # contiguous, but 4 bytes past a 16-byte boundary
    xs[...] = xp.asarray(x)
    y, mean, rstd = L.forward(xs, xp.asarray(w), xp.asarray(b), EPS)
    dx, dw, db = L.backward(xp.asarray(g), xs, xp.asarray(w), mean, rstd)
    x64, w64, g64 = x.astype(np.float64), w.astype(np.float64), g.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    rs = 1 / np.sqrt(((x64 - mu) ** 2).mean(-1, keepdims=True) + EPS)
    xh = (x64 - mu) * rs
    gw = g64 * w64
    rdx = rs * (gw - gw.mean(-1, keepdims=True) - xh * (gw * xh).mean(-1, keepdims=True))
    for a, e in ((y, xh * w64 + b), (dx, rdx), (dw, (g64 * xh).sum(0)), (db, g64.sum(0))):
        a = to_numpy(a).astype(np.float64)
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())
