"""Chapter 11, part 2: the fused attention kernels (kernels/attention.{cu,cpp}).

Every kernel version, on the CPU and (where present) the GPU, against a float64 NumPy
reference: fresh random inputs, outputs poisoned with NaN before the call, T in {1, 17, 128,
1000}, head dims 32/64/128, causal or not, with or without a key padding mask, batch 2 x heads
3. Tolerance: 1e-4 relative to the largest reference entry (at least 0.05, so that exact zeros,
such as dq at T = 1, are compared against float32 rounding noise). On the CPU the tiled
version 3 runs once per instruction set it is compiled for (AVX-512, AVX2, baseline), where this
CPU has it.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from helpers import assert_close

import tinytorch
from tinytorch import backend, kernels
from tinytorch.kernels import attention as A

pytestmark = pytest.mark.ch11

TOL = 1e-4
SIZES = (1, 17, 128, 1000)
B, H = 2, 3


def reference(q, k, v, causal, kpm, scale, dout):
    """float64 attention and its gradients, the T x T way."""
    q, k, v, dout = (np.asarray(x, np.float64) for x in (q, k, v, dout))
    Tq, Tk = q.shape[-2], k.shape[-2]
    s = q @ np.swapaxes(k, -1, -2) * scale
    allowed = np.ones(s.shape, bool)
    if causal:
        allowed &= np.tril(np.ones((Tq, Tk), bool))
    if kpm is not None:
        allowed &= ~kpm[:, None, None, :]
    s = np.where(allowed, s, -np.inf)
    m = s.max(-1, keepdims=True)
    full = np.isfinite(m)  # rows with at least one visible key
    e = np.where(allowed, np.exp(s - np.where(full, m, 0)), 0)
    l = e.sum(-1, keepdims=True)
    p = e / np.where(l == 0, 1, l)
    o = p @ v
    lse = np.where(full, np.log(np.where(l == 0, 1, l)) + np.where(full, m, 0), np.inf)[..., 0]
    dv = np.swapaxes(p, -1, -2) @ dout
    ds = p * (dout @ np.swapaxes(v, -1, -2) - (dout * o).sum(-1, keepdims=True))
    return o, lse, ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv


@functools.cache
def case(T, D, causal, masked):
    """Fresh random inputs for one configuration (drawn once per session) and the reference."""
    rng = np.random.default_rng()
    q, k, v, dout = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
    kpm = None
    if masked:
        kpm = rng.random((B, T)) < 0.25
        kpm[0, 0] = True  # with causal: query 0 of batch 0 sees no key at all
    scale = 1.0 / math.sqrt(D)
    return (q, k, v, dout, kpm, scale), reference(q, k, v, causal, kpm, scale, dout)


def rel_err(actual, expected):
    a = backend.to_device(actual, "cpu").astype(np.float64)
    return float(np.abs(a - expected).max() / max(np.abs(expected).max(), 0.05))


def _cuda_ok():
    if not backend.cuda_is_available():
        return False
    try:
        return kernels.available() and kernels.build.load().with_cuda
    except Exception:  # noqa: BLE001 - a build failure shows up in the CPU tests
        return False


CUDA = [
    pytest.mark.cuda,
    pytest.mark.skipif(not backend.cuda_is_available(), reason="no CUDA GPU/CuPy"),
]
CPU_ISAS = ("avx512", "avx2", "base")  # what kernels/attention.cpp compiles v3 for
# version 2 on the CPU is the online softmax in C++ (exercise online_softmax_cpp)
ONLINE_CPP = pytest.mark.exercise("online_softmax_cpp")
DEVICE_VERSIONS = (
    [
        pytest.param("cpu", v, None, id=f"cpu-v{v}", marks=[ONLINE_CPP] if v == 2 else [])
        for v in A.CPU_VERSIONS
        if v != 3
    ]
    + [pytest.param("cpu", 3, isa, id=f"cpu-v3-{isa}") for isa in CPU_ISAS]
    + [pytest.param("cuda", v, None, id=f"cuda-v{v}", marks=CUDA) for v in A.CUDA_VERSIONS]
)


def _skip_unless_runnable(device, isa):
    if device == "cuda" and not _cuda_ok():
        pytest.skip("the kernel module was built without CUDA")
    if isa is not None and isa not in kernels.cpu_isas():
        pytest.skip(f"this CPU has no {isa} (it runs {kernels.cpu_isas()})")


def _grid():
    for T, D, causal, masked in itertools.product(
        SIZES, (32, 64, 128), (False, True), (False, True)
    ):
        yield pytest.param(
            T,
            D,
            causal,
            masked,
            id=f"T{T}-d{D}-{'causal' if causal else 'full'}{'-pad' if masked else ''}",
        )


def run_kernels(device, version, inputs, causal, isa=None):
    if isa is not None:
        with kernels.using_cpu_isa(isa):
            assert kernels.cpu_isa() == isa
            return run_kernels(device, version, inputs, causal)
    (q, k, v, dout, kpm, scale) = inputs
    xp = backend.get_xp(device)
    q, k, v, dout = (xp.asarray(x) for x in (q, k, v, dout))
    kpm = None if kpm is None else xp.asarray(kpm)
    out = (xp.full(q.shape, np.nan, np.float32), xp.full(q.shape[:3], np.nan, np.float32))
    o, lse = A.forward(q, k, v, causal, kpm, scale, version, out=out)
    grads = tuple(xp.full(x.shape, np.nan, np.float32) for x in (q, k, v))
    dq, dk, dv = A.backward(q, k, v, o, lse, dout, causal, kpm, scale, version, grads=grads)
    return o, lse, dq, dk, dv


@pytest.mark.parametrize("device,version,isa", DEVICE_VERSIONS)
@pytest.mark.parametrize("T,D,causal,masked", list(_grid()))
def test_matches_float64_reference(device, version, isa, T, D, causal, masked):
    _skip_unless_runnable(device, isa)
    inputs, ref = case(T, D, causal, masked)
    got = run_kernels(device, version, inputs, causal, isa)
    for name, g, r in zip(("out", "lse", "dq", "dk", "dv"), got, ref):
        g = backend.to_device(g, "cpu")
        if name == "lse":  # +inf exactly where a query sees no key
            assert np.array_equal(np.isinf(g), np.isinf(r)), "lse: wrong fully-masked rows"
            g, r = g[np.isfinite(r)], r[np.isfinite(r)]
            if r.size == 0:
                continue
        assert not np.isnan(g).any(), f"{name}: NaN left (an output element never written)"
        err = rel_err(g, r)
        assert err < TOL, f"{name}: relative error {err:.2e} (v{version} on {device})"


@pytest.mark.parametrize("device,version,isa", DEVICE_VERSIONS)
def test_fully_masked_rows_are_zero(device, version, isa):
    """Every key of batch entry 1 masked: its outputs and all its gradients are exactly 0."""
    _skip_unless_runnable(device, isa)
    rng = np.random.default_rng()
    q, k, v, dout = (rng.standard_normal((B, H, 37, 64)).astype(np.float32) for _ in range(4))
    kpm = rng.random((B, 37)) < 0.5
    kpm[1] = True
    o, lse, dq, dk, dv = (
        backend.to_device(x, "cpu")
        for x in run_kernels(device, version, (q, k, v, dout, kpm, 0.125), True, isa)
    )
    assert np.all(o[1] == 0) and np.all(np.isposinf(lse[1]))
    assert np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0)
    assert np.all(dk[0][:, kpm[0]] == 0), "a masked key gets no gradient"


@pytest.mark.parametrize("device,version,isa", DEVICE_VERSIONS)
def test_different_query_and_key_lengths(device, version, isa):
    """Tq != Tk (cross attention; causal is top-left aligned as in PyTorch)."""
    _skip_unless_runnable(device, isa)
    rng = np.random.default_rng()
    for (Tq, Tk), causal in itertools.product(((40, 70), (70, 40)), (False, True)):
        q, dout = (rng.standard_normal((B, H, Tq, 32)).astype(np.float32) for _ in range(2))
        k, v = (rng.standard_normal((B, H, Tk, 32)).astype(np.float32) for _ in range(2))
        kpm = rng.random((B, Tk)) < 0.2
        ref = reference(q, k, v, causal, kpm, 0.2, dout)
        got = run_kernels(device, version, (q, k, v, dout, kpm, 0.2), causal, isa)
        for name, g, r in zip(("out", "lse", "dq", "dk", "dv"), got, ref):
            if name != "lse":
                assert rel_err(g, r) < TOL, f"{name} Tq={Tq} Tk={Tk} causal={causal}"


@pytest.mark.exercise("online_softmax")
@pytest.mark.parametrize("block", [1, 16, 64])
def test_online_softmax_in_array_code(device, block):
    """The algorithm itself (exercise): tiles of keys, running max and sum, in float64."""
    rng = np.random.default_rng()
    for Tq, Tk, causal in ((37, 37, True), (20, 45, False)):
        q, dout = (rng.standard_normal((B, H, Tq, 32)) for _ in range(2))
        k, v = (rng.standard_normal((B, H, Tk, 32)) for _ in range(2))
        kpm = rng.random((B, Tk)) < 0.3
        kpm[0, 0] = True
        xp = backend.get_xp(device)
        out, lse = A.online_softmax_attention(
            *(xp.asarray(x) for x in (q, k, v)), causal, xp.asarray(kpm), 0.3, block
        )
        ref = reference(q, k, v, causal, kpm, 0.3, dout)
        assert_close(out, ref[0], msg="out")
        assert_close(lse, ref[1], msg="lse")


# ---- bad input: a clear error, never a crash ---------------------------------------------------
@pytest.mark.exercise("input_checks")
def test_bad_input_raw_arrays(device):
    if device == "cuda" and not _cuda_ok():
        pytest.skip("the kernel module was built without CUDA")
    xp = backend.get_xp(device)
    x = xp.asarray(np.random.default_rng().standard_normal((2, 3, 8, 32)).astype(np.float32))
    with pytest.raises(ValueError, match="head dim 48"):
        y = xp.zeros((2, 3, 8, 48), np.float32)
        A.forward(y, y, y)
    with pytest.raises(ValueError, match="expected q"):
        A.forward(x, x[:, :2].copy(), x)
    with pytest.raises(ValueError, match="expected q"):
        A.forward(x, x, xp.zeros((2, 3, 9, 32), np.float32))
    with pytest.raises(TypeError, match="float32"):
        A.forward(x.astype(np.float64), x, x)
    with pytest.raises(ValueError, match="C-contiguous"):
        A.forward(xp.swapaxes(x, 1, 2), x, x)
    with pytest.raises(ValueError, match="4-D"):
        A.forward(x[0], x[0], x[0])
    with pytest.raises(ValueError, match="version"):
        A.forward(x, x, x, version=9)
    with pytest.raises(TypeError, match="key_padding_mask"):
        A.forward(x, x, x, key_padding_mask=xp.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="key_padding_mask"):
        A.forward(x, x, x, key_padding_mask=xp.zeros((2, 7), bool))
    o, lse = A.forward(x, x, x)
    with pytest.raises(ValueError, match="grad_out"):
        A.backward(x, x, x, o, lse, o[:, :, :4])


@pytest.mark.cuda
def test_mixed_devices_is_an_error():
    if not _cuda_ok():
        pytest.skip("needs a GPU")
    import cupy

    x = np.zeros((1, 1, 4, 32), np.float32)
    with pytest.raises(ValueError, match="one device"):
        A.forward(x, cupy.asarray(x), x)


# ---- Tensor level: the autograd Function, supports(), dispatch() -------------------------------
def _torch_sdpa(q, k, v, **kw):
    tq, tk, tv = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **kw)
    return out, (tq, tk, tv)


@pytest.mark.parametrize("shape", [(2, 3, 20, 64), (4, 33, 32), (9, 128)])
def test_function_matches_torch(device, shape):
    """attention() and its gradients against torch's SDPA (float64), 2-D to 4-D inputs."""
    if device == "cuda" and not _cuda_ok():
        pytest.skip("the kernel module was built without CUDA")
    rng = np.random.default_rng()
    q, k, v, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(4))
    for causal in (False, True):
        ts = [tinytorch.tensor(x, device=device, requires_grad=True) for x in (q, k, v)]
        out = A.attention(*ts, is_causal=causal)
        out.backward(tinytorch.tensor(g, device=device))
        ref, leaves = _torch_sdpa(q, k, v, is_causal=causal)
        ref.backward(torch.tensor(g, dtype=torch.float64))
        assert_close(out, ref, rtol=1e-4, atol=1e-5)
        for t, leaf in zip(ts, leaves):
            assert_close(t.grad, leaf.grad, rtol=1e-4, atol=1e-5)


def test_function_key_padding_and_noncontiguous(device):
    """Per-head views (as nn.MultiheadAttention makes) are copied; the padding mask matches
    torch's boolean attn_mask (True = may attend) negated."""
    if device == "cuda" and not _cuda_ok():
        pytest.skip("the kernel module was built without CUDA")
    rng = np.random.default_rng()
    x = rng.standard_normal((2, 24, 4, 32)).astype(np.float32)  # (N, L, heads, d)
    kpm = rng.random((2, 24)) < 0.3
    t = tinytorch.tensor(x, device=device, requires_grad=True)
    q = t.transpose(1, 2)  # (N, heads, L, d), not contiguous
    assert not q.data.flags.c_contiguous
    out = A.attention(q, q, q, key_padding_mask=tinytorch.tensor(kpm, device=device))
    out.sum().backward()
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tq = tx.transpose(1, 2)
    ref = torch.nn.functional.scaled_dot_product_attention(
        tq, tq, tq, attn_mask=torch.tensor(~kpm)[:, None, None, :]
    )
    ref.sum().backward()
    assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert_close(t.grad, tx.grad, rtol=1e-4, atol=1e-5)


def test_supports():
    f32 = lambda *s: tinytorch.randn(*s)  # noqa: E731
    q = f32(2, 3, 16, 64)
    assert A.supports(q, q, q)
    assert A.supports(q, q, q, is_causal=True)
    assert not A.supports(q, q, q, dropout_p=0.1)
    assert not A.supports(q.to(tinytorch.float64), q, q)  # float64: composed path
    r = f32(2, 3, 16, 48)
    assert not A.supports(r, r, r)  # head dim 48
    assert not A.supports(q, q, f32(2, 3, 16, 32))  # value dim != query dim
    assert not A.supports(q, f32(1, 3, 16, 64), f32(1, 3, 16, 64))  # broadcasting batch
    pad = tinytorch.tensor(np.ones((2, 1, 1, 16), bool))
    assert A.supports(q, q, q, attn_mask=pad)
    assert not A.supports(q, q, q, attn_mask=tinytorch.tensor(np.ones((16, 16), bool)))
    assert not A.supports(q, q, q, attn_mask=tinytorch.zeros(2, 1, 1, 16))  # float mask
    assert not A.supports(q, q, q, attn_mask=pad, is_causal=True)


def test_dispatch_matches_composed_path():
    """dispatch() gives what F.scaled_dot_product_attention's composed path gives, and
    steps aside (None) when the fused path is switched off or the call is unsupported."""
    from tinytorch.nn.functional_attention import attention_with_weights

    rng = np.random.default_rng()
    q, k, v = (
        tinytorch.tensor(rng.standard_normal((2, 3, 30, 32)).astype(np.float32), requires_grad=True)
        for _ in range(3)
    )
    keep = rng.random((2, 1, 1, 30)) > 0.3
    mask = tinytorch.tensor(keep)
    fused = A.dispatch(q, k, v, mask, 0.0, False, None)
    assert fused is not None
    composed = attention_with_weights(q, k, v, mask)[0]
    assert_close(fused, composed, rtol=1e-4, atol=1e-5)
    fused.sum().backward()
    gq = q.grad.data.copy()
    q.grad = None
    composed.sum().backward()
    assert_close(gq, q.grad, rtol=1e-4, atol=1e-5)
    assert A.dispatch(q, k, v, tinytorch.tensor(np.ones((30, 30), bool)), 0.0, False, None) is None
    with tinytorch.kernels.composed():  # only dispatch reads the switch: supports() still says yes
        assert A.supports(q, k, v, None, 0.0, True, None)
        assert A.dispatch(q, k, v, None, 0.0, True, None) is None


def test_cpu_isa_choice():
    """The best instruction set is the default; an unknown or unsupported one is refused and
    leaves the choice as it was."""
    isas = kernels.cpu_isas()
    assert isas[-1] == "base" and set(isas) <= set(CPU_ISAS)
    assert kernels.cpu_isa() == isas[0]
    with pytest.raises(ValueError, match="unknown instruction set"):
        kernels.set_cpu_isa("sse9")
    for name in CPU_ISAS:
        if name not in isas:
            with pytest.raises(ValueError, match="cannot run"):
                kernels.set_cpu_isa(name)
    assert kernels.cpu_isa() == isas[0]
