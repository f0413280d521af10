"""Chapter 12: the fused CPU kernels of the training step, each against its composed NumPy twin
and against PyTorch.

- softmax family (kernels/softmax.cpp): softmax, masked softmax, log_softmax and the
  cross-entropy (weights, ignore_index, label smoothing, every reduction), forward and
  backward, each instruction set this CPU runs, row lengths that leave a vector tail;
- the multi-tensor Adam/AdamW step and clip_grad_norm_'s norm and scale (kernels/foreach.cpp):
  bit for bit the composed update, and PyTorch's;
- the autograd engine's in-place sum of two gradients (autograd._sum_grads).
float32 tolerance: the suite's (rtol 1e-5, atol 1e-6); the float64 oracles are PyTorch's
float64 results on the same float32 inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close

import tinytorch as tt
from tinytorch import autograd, kernels
from tinytorch.gradcheck import gradcheck
from tinytorch.kernels import foreach
from tinytorch.kernels import softmax as S
from tinytorch.nn import functional as F
from tinytorch.ops import nn as nn_ops

pytestmark = pytest.mark.ch12

CPU_ISAS = ("avx512", "avx2", "base")
SHAPES = [(1, 1), (3, 7), (5, 17), (4, 33), (768, 65), (33, 1024), (2100, 65)]  # last: threads


@pytest.fixture
def any_size(monkeypatch):
    """The dispatchers take the softmax kernels at every size: the tests below check them
    through tinytorch.softmax and F.cross_entropy on inputs smaller than their minimum sizes."""
    monkeypatch.setattr(S, "MIN_SIZE", 1)
    monkeypatch.setattr(S, "MIN_SIZE_CROSS_ENTROPY", 1)


def _isa(isa):
    if isa not in kernels.cpu_isas():
        pytest.skip(f"this CPU has no {isa} (it runs {kernels.cpu_isas()})")
    return kernels.using_cpu_isa(isa)


def _data(shape, scale=4.0):
    rng = np.random.default_rng()
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    return x, g


def _torch64(fn, x, g):
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(tx)
    y.backward(torch.tensor(g, dtype=torch.float64))
    return y.detach().numpy(), tx.grad.detach().numpy()


def _twin(cls, x, g, **kw):
    """The composed Function's forward and backward on raw arrays."""
    fn = cls()
    fn.needs_input_grad = (True,)
    y = fn.forward(x, **kw)
    return y, fn.backward(g)


# ---- softmax rows: the exercise -------------------------------------------------------------
@pytest.mark.exercise("fused_softmax_rows")
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_rows_forward(isa, shape):
    x, _ = _data(shape)
    x.flat[0] = 80.0  # large logits: the row max is subtracted first
    with _isa(isa):
        y = S.forward(x)
    want = torch.softmax(torch.tensor(x, dtype=torch.float64), -1).detach().numpy()
    assert y.shape == x.shape and y.dtype == np.float32
    assert_close(y, want)
    assert_close(y.sum(-1), np.ones(shape[0]))


@pytest.mark.exercise("fused_softmax_rows")
def test_softmax_rows_special_rows():
    """All -inf: NaN (0/0, as torch), or 0 with zero_masked (attention's fully masked query);
    -inf entries give exactly 0; a NaN or +inf in a row makes the row NaN."""
    ninf, nan, inf = -np.inf, np.nan, np.inf
    x = np.array(
        [[ninf] * 5, [ninf, 0, ninf, 1, 2], [0, nan, 1, 2, 3], [inf, 0, 0, 0, 0]], np.float32
    )
    want = torch.softmax(torch.tensor(x), -1).detach().numpy()
    y = S.forward(x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert_close(y[1], want[1])
    assert y[1, 0] == 0.0 and y[1, 2] == 0.0
    masked = S.forward(x, zero_masked=True)
    assert (masked[0] == 0).all()
    assert_close(masked[1], want[1])
    assert np.isnan(masked[2:]).all()


# ---- the rest of the family against the twins and torch ---------------------------------------
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_and_log_softmax_match_twin_and_torch(isa, shape):
    x, g = _data(shape)
    with _isa(isa):
        y = S.forward(x)
        dx = S.backward(y, g)
        ly = S.log_softmax_forward(x)
        ldx = S.log_softmax_backward(ly, g)
    ty, tdx = _torch64(lambda t: torch.softmax(t, -1), x, g)
    tly, tldx = _torch64(lambda t: torch.log_softmax(t, -1), x, g)
    assert_close(dx, tdx, msg="softmax dx")
    assert_close(ly, tly, msg="log_softmax y")
    # log_softmax's backward subtracts exp(y) * sum(g) from g: the float32 rounding of y
    # (|y| up to about 10) is multiplied by |sum(g)|, so its absolute tolerance scales with it
    ltol = 1e-6 * (1 + np.abs(g.sum(-1)).max())
    assert_close(ldx, tldx, atol=ltol, msg="log_softmax dx")
    wy, wdx = _twin(nn_ops.Softmax, x, g, axis=1)
    assert_close(y, wy, msg="softmax y, twin")
    # two float32 results, each summing g * y in its own order: dx = y * (g - sum(g * y))
    # carries that sum's rounding (up to about 1e-6 * max|g| here) into both
    assert_close(dx, wdx, atol=1e-6 * (1 + np.abs(g).max()), msg="softmax dx, twin")
    wly, wldx = _twin(nn_ops.LogSoftmax, x, g, axis=1)
    assert_close(ly, wly, msg="log_softmax y, twin")
    assert_close(ldx, wldx, atol=ltol, msg="log_softmax dx, twin")


CE_OPTIONS = [(w, eps, ign) for w in (False, True) for eps in (0.0, 0.1) for ign in (-100, 2)]


def _ce_case(shape, ign):
    rng = np.random.default_rng()
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.integers(0, shape[1], shape[0])
    t[0] = ign  # one ignored row
    w = (rng.random(shape[1]) + 0.5).astype(np.float32)
    return x, t, w


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("shape", [(6, 5), (768, 65), (9, 1024), (2100, 65)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_twin_and_torch(isa, shape, reduction, any_size):
    for weighted, eps, ign in CE_OPTIONS:
        msg = f"weight={weighted} label_smoothing={eps} ignore_index={ign}"
        x, t, w = _ce_case(shape, ign)
        kw = dict(ignore_index=ign, reduction=reduction, label_smoothing=eps)
        xt = tt.tensor(x, requires_grad=True)
        with _isa(isa):
            out = F.cross_entropy(xt, tt.tensor(t), tt.tensor(w) if weighted else None, **kw)
            assert type(out._ctx).__name__ in ("CrossEntropyFunction", "Reshape"), msg
            g = np.asarray(np.random.randn(*out.shape), np.float32)
            out.backward(tt.tensor(g))
        xr = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        wr = torch.tensor(w, dtype=torch.float64) if weighted else None
        ref = torch.nn.functional.cross_entropy(xr, torch.tensor(t), wr, **kw)
        ref.backward(torch.tensor(g, dtype=torch.float64))
        assert_close(out, ref.detach().numpy(), msg=msg)
        assert_close(xt.grad, xr.grad.detach().numpy(), msg=msg)
        xc = tt.tensor(x, requires_grad=True)
        with kernels.composed():  # the twin: ops/nn.py's CrossEntropy
            twin = F.cross_entropy(xc, tt.tensor(t), tt.tensor(w) if weighted else None, **kw)
            twin.backward(tt.tensor(g))
        assert_close(out, twin, msg=msg)
        assert_close(xt.grad, xc.grad, msg=msg)


def test_cross_entropy_all_ignored_is_nan_with_zero_gradient(any_size):
    x = tt.tensor(np.random.randn(3, 4).astype(np.float32), requires_grad=True)
    with np.errstate(all="ignore"):  # 0 / 0, as in PyTorch
        out = F.cross_entropy(x, tt.tensor(np.array([-100, -100, -100])))
        out.backward()
    assert np.isnan(out.item())
    assert (x.grad.detach().numpy() == 0).all()


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "cross_entropy"])
def test_backward_against_finite_differences(op):
    """The kernels' backward (float32) against central differences of their own forward in
    float32 (step 1e-2 on logits of size ~1, tolerance 2e-3), and the float64 gradcheck of
    the composed twin that the kernels must agree with."""
    rng = np.random.default_rng()
    x = rng.standard_normal((4, 9)).astype(np.float32)
    r = rng.standard_normal((4, 9)).astype(np.float32)
    t = np.array([0, 3, -100, 8])
    w = (rng.random(9) + 0.5).astype(np.float32)

    def f(a):  # a scalar of x: <out, r> (softmax family) or the summed loss
        if op == "softmax":
            return float((S.forward(a) * r).sum(dtype=np.float64))
        if op == "log_softmax":
            return float((S.log_softmax_forward(a) * r).sum(dtype=np.float64))
        return float(S.cross_entropy_forward(a, t, w, -100, 0.1)[0].sum(dtype=np.float64))

    if op == "softmax":
        grad = S.backward(S.forward(x), r)
    elif op == "log_softmax":
        grad = S.log_softmax_backward(S.log_softmax_forward(x), r)
    else:
        stats = S.cross_entropy_forward(x, t, w, -100, 0.1)[1]
        grad = S.cross_entropy_backward(x, t, stats, np.ones(4, np.float32), w, -100, 0.1)
    h = np.float32(1e-2)
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        a, b = x.copy(), x.copy()
        a[i] += h
        b[i] -= h
        num[i] = (f(a) - f(b)) / (2 * h)
    assert_close(grad, num, rtol=2e-3, atol=2e-3)
    x64 = tt.tensor(x.astype(np.float64), requires_grad=True)
    fn = {
        "softmax": lambda a: nn_ops.softmax(a),
        "log_softmax": lambda a: nn_ops.log_softmax(a),
        "cross_entropy": lambda a: F.cross_entropy(
            a, tt.tensor(t), tt.tensor(w.astype(np.float64)), label_smoothing=0.1
        ),
    }[op]
    gradcheck(fn, [x64])


def test_dispatch_takes_the_kernels_where_they_apply(any_size):
    x32 = tt.tensor(np.random.randn(3, 4, 5).astype(np.float32), requires_grad=True)
    name = lambda t: type(t._ctx).__name__  # noqa: E731
    assert name(tt.softmax(x32, -1)) == "SoftmaxFunction"
    assert name(nn_ops.masked_softmax(x32, 2)) == "SoftmaxFunction"
    assert name(tt.log_softmax(x32, -1)) == "LogSoftmaxFunction"
    assert name(tt.softmax(x32, 1)) == "Softmax"  # not the last dim
    assert name(tt.softmax(x32.to(tt.float64), -1)) == "Softmax"
    with kernels.composed():
        assert name(tt.softmax(x32, -1)) == "Softmax"
        assert name(tt.log_softmax(x32, -1)) == "LogSoftmax"
    # a non-contiguous input is copied first; (..., C) of any rank
    xt = tt.tensor(np.random.randn(5, 4).astype(np.float32), requires_grad=True)
    y = tt.softmax(xt.transpose(0, 1), -1)
    g = np.random.randn(4, 5).astype(np.float32)
    y.backward(tt.tensor(g))
    ty, tdx = _torch64(lambda t: torch.softmax(t.T, -1), xt.detach().numpy(), g)
    assert_close(y, ty)
    assert_close(xt.grad, tdx)


def _spy_kernel_calls(monkeypatch):
    """The names of the compiled functions that the softmax family calls from now on."""
    calls, real = [], S.lib

    class Spy:
        def __getattr__(self, name):
            fn = getattr(real(), name)
            return lambda *a, **k: calls.append(name) or fn(*a, **k)

    monkeypatch.setattr(S, "lib", Spy)
    return calls


def test_small_calls_take_the_composed_ops_large_ones_the_kernels(monkeypatch):
    """Below S.MIN_SIZE elements (S.MIN_SIZE_CROSS_ENTROPY for the cross-entropy) the composed
    ops are as fast (the fused path's Python costs what the kernel saves): the dispatchers leave
    them, and take the kernels from that size up."""
    C = 64
    ops = {  # name: (call, composed Function, kernel, minimum size)
        "softmax": (lambda x, t: tt.softmax(x, -1), "Softmax", "softmax", S.MIN_SIZE),
        "masked": (lambda x, t: nn_ops.masked_softmax(x, -1), "Softmax", "softmax", S.MIN_SIZE),
        "log_softmax": (
            lambda x, t: tt.log_softmax(x, -1),
            "LogSoftmax",
            "log_softmax",
            S.MIN_SIZE,
        ),
        "cross_entropy": (
            lambda x, t: F.cross_entropy(x, t),
            "CrossEntropy",
            "cross_entropy",
            S.MIN_SIZE_CROSS_ENTROPY,
        ),
    }
    calls = _spy_kernel_calls(monkeypatch)
    for name, (fn, twin, kernel, least) in ops.items():
        for rows in (8, least // C - 1, least // C, least // C + 3):
            big = rows * C >= least
            x = tt.tensor(np.random.randn(rows, C).astype(np.float32), requires_grad=True)
            out = fn(x, tt.tensor(np.random.randint(0, C, rows)))
            out.backward(tt.ones_like(out.detach()))
            got, want = type(out._ctx).__name__, (twin + "Function" if big else twin)
            assert got == want, f"{name} on ({rows}, {C}): {got}"
            expect = [f"{kernel}_forward_cpu", f"{kernel}_backward_cpu"] if big else []
            assert calls == expect, f"{name} on ({rows}, {C})"
            calls.clear()


def test_masked_softmax_zero_rows_through_autograd(any_size):
    x = np.random.randn(3, 4).astype(np.float32)
    x[1] = -np.inf
    xt = tt.tensor(x, requires_grad=True)
    y = nn_ops.masked_softmax(xt, -1)
    y.backward(tt.ones(3, 4))
    assert (y.detach().numpy()[1] == 0).all() and (xt.grad.detach().numpy()[1] == 0).all()
    with kernels.composed():
        xc = tt.tensor(x, requires_grad=True)
        yc = nn_ops.masked_softmax(xc, -1)
        yc.backward(tt.ones(3, 4))
    assert_close(y, yc)
    assert_close(xt.grad, xc.grad)


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="float32"):
        S.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        S.forward(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        S.forward(np.zeros((4, 3), np.float32).T)
    with pytest.raises(ValueError, match="out of range"):
        S.cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(TypeError, match="int64"):
        S.cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([0, 1], np.int32))


# ---- the multi-tensor Adam / AdamW step -----------------------------------------------------
ADAM_CASES = {
    "adam": ("Adam", dict(lr=1e-2)),
    "adam_l2": ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)),
    "adamw_amsgrad": ("AdamW", dict(lr=1e-2, amsgrad=True)),
    "adam_maximize": ("Adam", dict(lr=1e-2, maximize=True, weight_decay=0.01)),
}
SIZES = [(3,), (5, 7), (300, 229), (1,)]  # one of them spans several pieces of 32768


def _params(lib, init):
    if lib is tt:
        return [tt.tensor(a.copy(), requires_grad=True) for a in init]
    return [torch.tensor(a.copy(), requires_grad=True) for a in init]


@pytest.mark.parametrize("case", ADAM_CASES)
def test_foreach_adam_equals_the_composed_update_and_torch(case):
    name, kw = ADAM_CASES[case]
    rng = np.random.default_rng()
    init = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    fused, composed, ref = _params(tt, init), _params(tt, init), _params(torch, init)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": kw["lr"] / 3}]  # noqa: E731
    opts = [
        getattr(tt.optim, name)(groups(fused), **kw),
        getattr(tt.optim, name)(groups(composed), **kw),
    ]
    ropt = getattr(torch.optim, name)(groups(ref), **kw, foreach=False)
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
        for ps in (fused, composed):
            for p, g in zip(ps, grads):
                p.grad = tt.tensor(g.copy())
        for p, g in zip(ref, grads):
            p.grad = torch.tensor(g.copy())
        opts[0].step()
        with kernels.composed():
            opts[1].step()
        ropt.step()
    for p, c, r in zip(fused, composed, ref):
        # the same float32 operations in the same order: the same bits
        np.testing.assert_array_equal(p.detach().numpy(), c.detach().numpy())
        # PyTorch's float32 Adam rounds in its own order: where v is small, m / sqrt(v) turns a
        # few ulps into about 1e-4 of a step of size lr (one element in 68,700 missed 1e-6 by
        # 4.7e-6 in CI); a wrong formula is off by the order of lr itself
        assert_close(p, r.detach().numpy(), atol=1e-3 * kw["lr"])
    for p, c in zip(fused, composed):
        s, sc = opts[0].state[p], opts[1].state[c]
        assert set(s) == set(sc) and s["step"] == sc["step"] == 5
        for k in s:
            if k != "step":
                np.testing.assert_array_equal(s[k].detach().numpy(), sc[k].detach().numpy())


def test_foreach_adam_leaves_float64_and_the_switch_to_the_composed_path(monkeypatch):
    calls = []
    monkeypatch.setattr(foreach, "adam_step", lambda *a, **k: calls.append(a))
    p64 = tt.tensor(np.ones(3), requires_grad=True)
    p64.grad = tt.tensor(np.ones(3))
    tt.optim.AdamW([p64]).step()
    assert not calls
    p32 = tt.tensor(np.ones(3, np.float32), requires_grad=True)
    p32.grad = tt.tensor(np.ones(3, np.float32))
    with kernels.composed():
        tt.optim.AdamW([p32]).step()
    assert not calls
    tt.optim.AdamW([p32]).step()
    assert len(calls) == 1


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_fused_equals_composed_and_torch(max_norm):
    rng = np.random.default_rng()
    grads = [rng.standard_normal(s).astype(np.float32) for s in SIZES]
    out = []
    for fused in (True, False):
        ps = _params(tt, grads)
        for p, g in zip(ps, grads):
            p.grad = tt.tensor(g.copy())
        kernels.set_fused(fused)
        try:
            total = tt.nn.utils.clip_grad_norm_(ps, max_norm)
        finally:
            kernels.set_fused(True)
        out.append((total, [p.grad.detach().numpy() for p in ps]))
    rs = _params(torch, grads)
    for p, g in zip(rs, grads):
        p.grad = torch.tensor(g.copy())
    rtotal = torch.nn.utils.clip_grad_norm_(rs, max_norm)
    (ft, fg), (ct, cg) = out
    assert ft.dtype == np.float32
    assert_close(ft, ct)
    assert_close(ft, rtotal.detach().numpy())
    for a, b, r in zip(fg, cg, rs):
        assert_close(a, b)
        assert_close(a, r.grad.detach().numpy())


def test_foreach_refuses_mismatched_lists():
    a, b = np.zeros(3, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="shapes"):
        foreach.adam_step([a], [b], [a], [a], None, [1], 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError, match="float32"):
        foreach.sum_squares([np.zeros(3)])


# ---- the engine's in-place sum of gradients -------------------------------------------------
def test_sum_grads_writes_in_place_only_into_arrays_nothing_else_holds():
    grads = {0: np.ones(3)}
    prev = grads.get(0)
    out = autograd._sum_grads(prev, np.ones(3))
    assert out is prev and (out == 2).all()  # only `grads` and the local held it
    held = np.ones(3)
    grads = {0: held, 1: held}  # (Add hands one array to both inputs)
    prev = grads.get(0)
    out = autograd._sum_grads(prev, np.ones(3))
    assert out is not held and (held == 1).all()
    view = np.ones(6)[:3]
    grads = {0: view}
    prev = grads.get(0)
    assert autograd._sum_grads(prev, np.ones(3)) is not view  # a view: never written


def test_gradients_with_shared_paths_match_torch():
    """x feeds several ops whose backwards return shared arrays (x + x, the residual stream);
    the in-place sums must not corrupt any of them."""
    rng = np.random.default_rng()
    x0, w0 = rng.standard_normal((4, 6)), rng.standard_normal((6, 6))

    def model(lib, x, w):
        h = x + x
        h = h + lib.tanh(h @ w)  # a residual: Add's backward hands one g to both paths
        h = h + lib.tanh(h @ w) * x
        return (h * h).sum()

    x, w = tt.tensor(x0, requires_grad=True), tt.tensor(w0, requires_grad=True)
    xr, wr = torch.tensor(x0, requires_grad=True), torch.tensor(w0, requires_grad=True)
    model(tt, x, w).backward()
    model(torch, xr, wr).backward()
    assert_close(x.grad, xr.grad.detach().numpy())
    assert_close(w.grad, wr.grad.detach().numpy())


# ---- the LSTM layer with the C++ cell -------------------------------------------------------
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_kernel_layer_matches_twin_and_torch(isa, reverse, bias):
    from tinytorch.kernels.lstm import LSTMKernelLayer
    from tinytorch.nn.rnn_fused import FusedLSTMLayer

    T, B, I, H = 7, 3, 5, 32
    rng = np.random.default_rng()
    theirs = torch.nn.LSTM(I, H, bias=bias)
    ws = [theirs.weight_ih_l0, theirs.weight_hh_l0]
    ws += [theirs.bias_ih_l0, theirs.bias_hh_l0] if bias else []
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    g = rng.standard_normal((T + 1, B, H)).astype(np.float32)
    results = []
    for layer in (LSTMKernelLayer, FusedLSTMLayer):
        leaves = [tt.tensor(a, requires_grad=True) for a in (x, h0, c0)]
        wts = [tt.tensor(w.detach().numpy(), requires_grad=True) for w in ws]
        with _isa(isa):
            out = layer.apply(*leaves, *wts, *([] if bias else [None, None]), reverse=reverse)
            out.backward(tt.tensor(g))
        results.append((out, [t.grad for t in leaves + wts]))
    (out, grads), (twin, twin_grads) = results
    assert_close(out, twin)
    for a, b in zip(grads, twin_grads):
        assert_close(a, b)
    # PyTorch: reverse = the time-flipped sequence
    xr = torch.tensor(x[::-1].copy() if reverse else x, requires_grad=True)
    sr = [torch.tensor(s[None], requires_grad=True) for s in (h0, c0)]
    o, (hn, cn) = theirs(xr, tuple(sr))
    o = o.flip(0) if reverse else o
    assert_close(out.detach().numpy()[:T], o.detach().numpy())
    assert_close(out.detach().numpy()[T], cn[0].detach().numpy())
    (torch.cat([o, cn], 0) * torch.tensor(g)).sum().backward()
    dx = xr.grad.flip(0) if reverse else xr.grad
    assert_close(grads[0], dx.numpy())
    assert_close(grads[1], sr[0].grad[0].numpy())
    assert_close(grads[2], sr[1].grad[0].numpy())
    for a, w in zip(grads[3:], ws):
        assert_close(a, w.grad.numpy(), rtol=2e-5, atol=2e-6)  # sums over T * B rows


def test_nn_lstm_takes_the_kernel_for_float32_multiples_of_16():
    from tinytorch.kernels import lstm as fused_lstm
    from tinytorch.kernels.lstm import LSTMKernelLayer
    from tinytorch.nn.rnn_fused import FusedLSTMLayer

    x = tt.tensor(np.random.randn(4, 2, 3).astype(np.float32))
    for H, want in ((32, LSTMKernelLayer), (5, FusedLSTMLayer)):
        lstm = tt.nn.LSTM(3, H)
        state = (np.zeros((2, H), np.float32),) * 2
        assert fused_lstm.layer_function(x, state, lstm._layer_weights(0, 0)) is want
        x64, s64 = x.to(tt.float64), tuple(z.astype(np.float64) for z in state)
        w64 = lstm.to(tt.float64)._layer_weights(0, 0)
        assert fused_lstm.layer_function(x64, s64, w64) is FusedLSTMLayer
        lstm.to(tt.float32)
        with kernels.composed():
            assert fused_lstm.layer_function(x, state, lstm._layer_weights(0, 0)) is FusedLSTMLayer
    # the whole module against torch, float32, two layers, batch_first
    ours, theirs = tt.nn.LSTM(8, 32, 2, batch_first=True), torch.nn.LSTM(8, 32, 2, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    xb = np.random.randn(3, 5, 8).astype(np.float32)
    xo, xr = tt.tensor(xb, requires_grad=True), torch.tensor(xb, requires_grad=True)
    ours(xo)[0].sum().backward()
    theirs(xr)[0].sum().backward()
    assert_close(xo.grad, xr.grad.numpy())


def test_huge_logits_keep_their_precision(any_size):
    """Logits of 1e4: the row max is subtracted first and log-sum-exp kept in two parts, so
    the loss of a row whose logits differ by 1 is exact to float32 (m + log s would round the
    0.31 of log s to a multiple of 1e4's spacing, 0.001)."""
    x = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0]], np.float32)
    t = np.array([0, 2])
    xt = tt.tensor(x, requires_grad=True)
    out = F.cross_entropy(xt, tt.tensor(t), reduction="none")
    out.sum().backward()
    xr = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(xr, torch.tensor(t), reduction="none")
    ref.sum().backward()
    assert_close(out, ref.detach().numpy())
    assert_close(xt.grad, xr.grad.numpy())
    assert_close(S.log_softmax_forward(x), torch.log_softmax(xr, -1).detach().numpy())
