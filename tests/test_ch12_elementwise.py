"""Chapter 12: the elementwise kernels (kernels/elementwise.cpp, reduce.cpp, copy.cpp; bound in
tinytorch/kernels/elementwise.py) and their wiring into the ops.

Three oracles: PyTorch in float64 (the math), the composed NumPy twin (the same op with
`tinytorch.kernels.composed()`, which is what the library runs without the kernels), and NumPy
itself for what must be exact (add, mul, copies, cat: bit for bit). exp, tanh and sigmoid use
polynomials within a few float32 ulps: the suite's float32 tolerance (rtol 1e-5, atol 1e-6).
Sums are compared with float64 sums; their float32 rounding grows with the number of terms, so
their atol is 1e-5 times the sum of |x| (NumPy's own float32 sums miss by about as much).

The backwards here are the composed ops' formulas (exp' = y, tanh' = 1 - y^2, sigmoid' = y(1 - y),
relu' = [y > 0]) computed in one pass on float32 arrays; their float64 twins are gradchecked in
chapter 01 (the kernels take float32 only), and here they are checked against PyTorch's autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close

import tinytorch as tt
from tinytorch import kernels
from tinytorch.kernels import elementwise as E

pytestmark = pytest.mark.ch12

CPU_ISAS = ("avx512", "avx2", "base")
UNARY = {"exp": torch.exp, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
BIG = (300, 257)  # 77,100 elements: above E.MIN_SIZE, and rows that leave a vector tail
HUGE = (1100, 257)  # 282,700: above kParallelMin (kernels/elementwise.h), the threads' share


@pytest.fixture(autouse=True)
def _needs_kernels():
    if not kernels.available():
        pytest.skip(f"kernels unavailable: {kernels.build_error()}")


def _isa(isa):
    if isa not in kernels.cpu_isas():
        pytest.skip(f"this CPU has no {isa} (it runs {kernels.cpu_isas()})")
    return kernels.using_cpu_isa(isa)


def _rng():
    return np.random.default_rng()


# ---- raw arrays -----------------------------------------------------------------------------
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 17), (70001,), BIG, HUGE])
def test_unary_forward_backward_match_torch(isa, name, shape):
    rng = _rng()
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    special = [0.0, -0.0, 1e-8, -1e-8, 0.6, -0.65, 9.0, -9.0, 30.0, -30.0, 80.0, -80.0]
    k = min(x.size, len(special))
    x.flat[:k] = special[:k]
    g = rng.standard_normal(shape).astype(np.float32)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = UNARY[name](tx)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    with _isa(isa):
        y = E.unary(name, x)
        dx = E.unary_backward(name, y, g)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert_close(y, ty.detach().numpy(), msg=f"{name} y")
    # exp's gradient is as large as exp itself (up to e^80): relative tolerance only there
    assert_close(dx, tx.grad.numpy(), atol=0 if name == "exp" else None, msg=f"{name} dx")


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_unary_edge_values(isa):
    """inf, nan, overflow, underflow into denormals, as NumPy/PyTorch give them."""
    x = np.array(
        [np.nan, np.inf, -np.inf, 88.72, 88.8, 100.0, -87.5, -100.0, -103.0, -110.0, 0.0] * 7,
        np.float32,
    )
    with _isa(isa), np.errstate(all="ignore"):
        for name in UNARY:
            got = E.unary(name, x)
            want = UNARY[name](torch.tensor(x, dtype=torch.float64)).numpy().astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-44, err_msg=name)


def test_unary_backward_refuses_strided_or_mismatched_grad():
    y = E.unary("tanh", np.ones(BIG, np.float32))
    g = np.ones(BIG[::-1], np.float32)
    assert E.unary_backward("tanh", y, g.T) is None  # not C-contiguous
    assert E.unary_backward("tanh", y, g) is None  # another shape
    assert E.unary_backward("tanh", y, np.ones(BIG)) is None  # float64


BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("name", list(BINARY))
@pytest.mark.parametrize("shape", [BIG, HUGE])
def test_binary_is_exact(isa, name, shape):
    rng = _rng()
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    row = rng.standard_normal(shape[-1]).astype(np.float32)
    op = BINARY[name]
    pairs = [(a, b), (a, row), (row, a), (a, row.reshape(1, -1)), (row[None], a)]
    pairs += [(a, 0.1), (0.1, a), (a, 3), (-7, a), (a[:7, :5].copy(), 1.5)]  # Python scalars
    with _isa(isa):
        for x, y in pairs:
            got = E.binary(name, x, y)
            want = op(x, y)
            assert got.shape == want.shape and got.dtype == want.dtype == np.float32
            assert np.array_equal(got, want), (np.shape(x), np.shape(y))


def test_binary_declines_what_it_does_not_cover():
    a = np.ones(BIG, np.float32)
    assert E.binary("add", a, np.float64(2.0)) is None  # a NumPy scalar (apply passes floats)
    assert E.binary("add", a, np.ones((BIG[0], 1), np.float32)) is None  # a column
    assert E.binary("add", a, np.ones(BIG)) is None  # float64
    assert E.binary("add", a.T, np.ones(BIG[::-1], np.float32)) is None  # strided


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_mul_backward(isa):
    rng = _rng()
    a = rng.standard_normal(BIG).astype(np.float32)
    b = rng.standard_normal(BIG).astype(np.float32)
    row = rng.standard_normal(BIG[-1]).astype(np.float32)
    g = rng.standard_normal(BIG).astype(np.float32)
    with _isa(isa):
        ga, gb = E.mul_backward(g, a, b, True, True)
        assert np.array_equal(ga, g * b) and np.array_equal(gb, g * a)
        ga, gb = E.mul_backward(g, a, b, False, True)
        assert ga is None and np.array_equal(gb, g * a)
        for x, y, full_first in [(a, row, True), (row, a, False)]:
            gx, gy = E.mul_backward(g, x, y, True, True)
            g_full, g_row = (gx, gy) if full_first else (gy, gx)
            assert np.array_equal(g_full, g * row)
            want = (g.astype(np.float64) * a).sum(0)
            assert g_row.shape == row.shape
            assert_close(g_row, want, atol=1e-5 * np.abs(g * a).sum(0).max())


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_div_backward_matches_the_composed_formula(isa):
    rng = _rng()
    a, b, g = (rng.standard_normal(BIG).astype(np.float32) for _ in range(3))
    out = a / b
    with _isa(isa):
        ga, gb = E.div_backward(g, b, out, True, True)
        only_b = E.div_backward(g, b, out, False, True)
    t = g / b
    assert np.array_equal(ga, t) and np.array_equal(gb, -(t * out))
    assert only_b[0] is None and np.array_equal(only_b[1], gb)
    assert E.div_backward(g, b[:, :1].copy(), out, True, True) is None  # a broadcast b


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("shape", [(5,), (70001,), BIG, HUGE, (3, 200, 130), (1000, 3)])
def test_sums(isa, shape):
    rng = _rng()
    x = (rng.standard_normal(shape) + 0.5).astype(np.float32)
    y = rng.standard_normal(shape).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    with _isa(isa):
        total = E.sum_all(x)
        rows = E.sum_lastdim(x)
        mean = E.sum_lastdim(x, 1.0 / shape[-1])
        cols, cols_xy = E.colsum(x), E.colsum(x, y)
    assert total.shape == () and total.dtype == np.float32
    assert_close(total, x64.sum(), atol=1e-5 * np.abs(x64).sum())
    assert rows.shape == shape[:-1]
    assert_close(rows, x64.sum(-1), atol=1e-5 * np.abs(x64).sum(-1).max())
    assert_close(mean, x64.mean(-1), atol=1e-5 * np.abs(x64).mean(-1).max())
    lead = tuple(range(len(shape) - 1))
    assert cols.shape == shape[-1:]
    assert_close(cols, x64.sum(lead), atol=1e-5 * np.abs(x64).sum(lead).max())
    assert_close(cols_xy, (x64 * y64).sum(lead), atol=1e-5 * np.abs(x64 * y64).sum(lead).max())


def _views(rng):
    x3 = rng.standard_normal((7, 130, 90)).astype(np.float32)
    m = rng.standard_normal((301, 257)).astype(np.float32)
    return [
        x3,
        m.T,  # a transposed matrix (W x W blocks plus tails on both sides)
        x3.transpose(0, 2, 1),
        x3.transpose(2, 1, 0),
        x3[:, ::2],  # every other row
        x3[:, :, 5:80],  # a band of columns (cat's backward)
        np.broadcast_to(x3[:, :1], x3.shape),  # stride 0 (mean's backward)
        np.broadcast_to(np.float32(3.0), (300, 257)),  # all strides 0 (sum's backward)
        np.broadcast_to(m[0], (300, 257)),
        m[::3, ::2].T,  # both axes strided
    ]


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_copy_is_exact_for_every_layout(isa):
    rng = _rng()
    with _isa(isa):
        for v in _views(rng):
            if v.size < E.MIN_SIZE:
                v = np.broadcast_to(v, (2,) + v.shape) if v.strides[0] == 0 else v
            got = E.copy(v)
            if v.size < E.MIN_SIZE:
                assert got is None
                continue
            assert got is not None, (v.shape, v.strides)
            assert got.flags.c_contiguous and np.array_equal(got, v), (v.shape, v.strides)


def test_copy_declines_negative_strides_and_small_arrays():
    m = np.ones((400, 300), np.float32)
    assert E.copy(m[::-1]) is None
    assert E.copy(m[:10]) is None  # below MIN_SIZE: NumPy's copy is faster
    assert E.copy(np.ones((400, 300))) is None  # float64


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cat_is_exact(axis):
    rng = _rng()
    shapes = [[40, 50, 60], [40, 50, 60], [40, 50, 60]]
    for s, extra in zip(shapes, (3, 1, 7)):
        s[axis] = extra * 10
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    got = E.cat(arrays, axis)
    assert np.array_equal(got, np.concatenate(arrays, axis))


# ---- through the ops: fused against composed against PyTorch ---------------------------------
def _x(rng, shape=BIG):
    return rng.standard_normal(shape).astype(np.float32)


CASES = {
    "add": lambda L, x, y, b: x + y,
    "add_bcast": lambda L, x, y, b: x + b,
    "bcast_add": lambda L, x, y, b: b + x,
    "mul": lambda L, x, y, b: x * y,
    "mul_bcast": lambda L, x, y, b: b * x,
    "scalars": lambda L, x, y, b: (2.5 - x) * 0.5 + 1 - x / 3,
    "sub_bcast": lambda L, x, y, b: b - x,
    "div": lambda L, x, y, b: x / (y * y + 1),
    "div_bcast": lambda L, x, y, b: b / (x * x + 1),
    "exp": lambda L, x, y, b: L.exp(x),
    "tanh": lambda L, x, y, b: L.tanh(x),
    "sigmoid": lambda L, x, y, b: L.sigmoid(x),
    "relu": lambda L, x, y, b: L.relu(x),
    "sum": lambda L, x, y, b: x.sum(),
    "sum_keepdim": lambda L, x, y, b: x.sum(dim=-1, keepdim=True),
    "mean": lambda L, x, y, b: x.mean(),
    "mean_dim": lambda L, x, y, b: x.mean(dim=-1),
    "transpose_reshape": lambda L, x, y, b: x.transpose(0, 1).reshape(-1),
    "cat": lambda L, x, y, b: L.cat([x, y], dim=1),
    "cat0": lambda L, x, y, b: L.cat([x, y], dim=0),
}


def _run(L, fn, arrays, g):
    make = tt.tensor if L is tt else torch.tensor
    leaves = [make(a, requires_grad=True) for a in arrays]
    out = fn(L, *leaves)
    out.backward(make(g))
    grads = [leaf.grad for leaf in leaves]
    return out.detach() if L is torch else out, grads


@pytest.mark.parametrize("case", list(CASES))
def test_ops_fused_match_composed_and_torch(case):
    fn = CASES[case]
    rng = _rng()
    arrays = [_x(rng), _x(rng), _x(rng, BIG[-1:])]
    with tt.no_grad():
        shape = fn(tt, *[tt.tensor(a) for a in arrays]).shape
    g = np.asarray(rng.standard_normal(shape), dtype=np.float32)
    out, grads = _run(tt, fn, arrays, g)
    with kernels.composed():
        out_c, grads_c = _run(tt, fn, arrays, g)
    out_t, grads_t = _run(torch, fn, arrays, g)
    atol = None
    if case.startswith(("sum", "mean")):  # float32 sums: atol in proportion to the sum of |x|
        with tt.no_grad():
            scale = fn(tt, *[tt.tensor(np.abs(a).astype(np.float64)) for a in arrays]).data
        atol = 2e-6 * np.max(scale)
    assert_close(out, out_c, atol=atol, msg=f"{case} vs composed")
    assert_close(out, out_t, atol=atol, msg=f"{case} vs torch")
    for i, (a, c, t) in enumerate(zip(grads, grads_c, grads_t)):
        assert (a is None) == (t is None), f"{case}: grad {i}"
        if a is None:
            continue
        atol = None
        if a.shape == arrays[2].shape:  # a bias's gradient: a sum over the rows
            atol = 2e-6 * np.abs(g).sum(0).max() * (np.abs(arrays[0]).max() if "mul" in case else 1)
        assert_close(a, c, atol=atol, msg=f"{case} grad {i} vs composed")
        assert_close(a, t, atol=atol, msg=f"{case} grad {i} vs torch")


def _spy(monkeypatch):
    calls = []
    for name in ("unary", "unary_backward", "binary", "mul_backward", "div_backward", "sum_all",
                 "sum_lastdim", "colsum", "copy", "cat"):  # fmt: skip
        real = getattr(E, name)

        def spy(*args, _real=real, _name=name, **kw):
            out = _real(*args, **kw)
            if out is not None:  # None: the kernel declined, NumPy runs
                calls.append(_name)
            return out

        monkeypatch.setattr(E, name, spy)
    return calls


@pytest.mark.parametrize(
    "case, expect",
    [
        ("exp", ["unary", "unary_backward"]),
        ("sigmoid", ["unary", "unary_backward"]),
        ("add_bcast", ["binary", "colsum", "copy"]),
        ("mul", ["binary", "mul_backward"]),
        ("div", ["binary", "div_backward", "mul_backward"]),
        ("mean_dim", ["sum_lastdim", "copy"]),
        ("transpose_reshape", ["copy", "copy"]),
        ("cat", ["cat", "copy", "copy"]),
    ],
)
def test_ops_take_the_kernels_only_where_they_apply(monkeypatch, case, expect):
    fn = CASES[case]
    rng = _rng()
    calls = _spy(monkeypatch)

    def run(shape, dtype=np.float32):
        arrays = [_x(rng, shape).astype(dtype) for _ in range(2)] + [
            _x(rng, shape[-1:]).astype(dtype)
        ]
        leaves = [tt.tensor(a, requires_grad=True) for a in arrays]
        out = fn(tt, *leaves)
        out.backward(tt.tensor(np.ones(out.shape, dtype)))  # a contiguous gradient, as a loss's

    run(BIG)
    assert all(c in calls for c in expect), (case, calls)
    calls.clear()
    run((64, 64))  # small: NumPy only (the kernels' call costs more than the work)
    run(BIG, np.float64)  # float64: NumPy
    with kernels.composed():
        run(BIG)
    assert calls == [], (case, calls)
