"""Every differentiable op against PyTorch, and against finite differences.

Each case is one function `fn(L, *xs)` written once for both libraries (L is `tinytorch` or
`torch`: the names are the same), plus the shapes of its float inputs. For every case we check,
on every device:

- float64 and float32: the output and the gradient of every input equal PyTorch's on the same
  inputs and the same upstream gradient (tolerances below), and float32 stays float32 in the
  outputs and in every gradient;
- float64: `tinytorch.gradcheck.gradcheck` (central differences) agrees with the backward.

Tolerances: float64 rtol 1e-7 / atol 1e-9 (helpers.TOL); float32 rtol 1e-5 and atol 1e-5,
looser in atol than helpers' 1e-6 because NumPy and PyTorch sum in different orders, and a sum
of k values of size ~1 carries an absolute rounding error of ~sqrt(k) * 6e-8.
Index arrays, targets and masks are drawn fresh at import, the same for both libraries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.gradcheck import gradcheck

pytestmark = pytest.mark.ch01

RNG = np.random.default_rng()
TORCH_DTYPE = {np.dtype("float32"): torch.float32, np.dtype("float64"): torch.float64}
F32 = dict(rtol=1e-5, atol=1e-5)


def _pos(shape):
    return RNG.uniform(0.5, 2.0, shape)


def _away(shape):  # |x| in [0.5, 2]: safe denominators, no kinks near 0
    return RNG.uniform(0.5, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)


def _normal(shape):
    return RNG.standard_normal(shape)


def _distinct(shape):
    """Values at least 0.05 apart (max/min/clamp/relu have no ties or kinks within eps)."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) * 0.1 - 0.05 * n + 0.025).reshape(shape)


class Case:
    def __init__(self, name, fn, *shapes, sample=_normal, gradcheck=True, f32=None):
        self.name, self.fn, self.shapes, self.sample = name, fn, shapes, sample
        self.gradcheck, self.f32 = gradcheck, f32 or F32

    def __repr__(self):
        return self.name


IDX = RNG.integers(0, 4, 9)  # repeats guaranteed: 9 draws from 4 values
IDX[:2] = [2, 2]
ROWS, COLS = RNG.integers(0, 4, 6), RNG.integers(-5, 5, 6)
MASK = RNG.random((4, 5)) < 0.5
TARGET = RNG.integers(0, 5, 6)
TARGET_IGN = np.where(RNG.random(6) < 0.4, -100, TARGET)
TARGET_IGN[0] = TARGET[0] = 1  # at least one kept
TARGET_3D = RNG.integers(0, 5, (2, 3))
NEG_IDX = np.array([-1, 3, 0, -4, 2, -1])  # -1 and 3 are the same row of 4, as are -4 and 0
IDX_2D = RNG.integers(0, 4, (2, 3))
IDS = RNG.integers(0, 7, (3, 4))
IDS[0, :2] = 3  # a repeated id: its row must receive both gradients


def _t(L, x, arr, dtype=None):
    """An index/target tensor for library L on x's device."""
    return (
        L.tensor(arr, device=x.device)
        if dtype is None
        else L.tensor(arr, dtype=dtype, device=x.device)
    )


def _F(L):
    return L.nn.functional


CASES = [
    # ---- elementwise arithmetic, with broadcasting ------------------------------------
    Case("add", lambda L, a, b: a + b, (3, 4), (3, 4)),
    Case("add_bcast", lambda L, a, b: a + b, (2, 1, 4), (3, 1)),
    Case("sub_bcast", lambda L, a, b: a - b, (4,), (3, 4)),
    Case("mul_bcast", lambda L, a, b: a * b, (2, 3, 1), (1, 4)),
    Case("mul_size1", lambda L, a, b: a * b, (1, 1), (3, 1)),
    Case("div_bcast", lambda L, a, b: a / b, (3, 4), (4,), sample=_away),
    Case("div_scalar_shape", lambda L, a, b: a / b, (), (2, 3), sample=_away),
    Case("radd", lambda L, a: 2.5 + a, (3, 4)),
    Case("rsub", lambda L, a: 2.5 - a, (3, 4)),
    Case("rmul", lambda L, a: -1.5 * a, (3, 4)),
    Case("rdiv", lambda L, a: 3.0 / a, (3, 4), sample=_away),
    Case("div_by_scalar", lambda L, a: a / 7, (3, 4)),
    Case("pow_scalar", lambda L, a: a**3, (3, 4)),
    Case("pow_square", lambda L, a: a**2, (3, 4)),
    Case("pow_frac", lambda L, a: a**-0.5, (3, 4), sample=_pos),
    Case("pow_tensor", lambda L, a, b: a**b, (3, 4), (4,), sample=_pos),
    Case("rpow", lambda L, a: 2.0**a, (3, 4)),
    Case("pow_method", lambda L, a: a.pow(1.5), (5,), sample=_pos),
    Case("remainder", lambda L, a, b: a % b, (3, 4), (4,), sample=_away),
    Case("remainder_scalar", lambda L, a: a % 0.7, (3, 4), sample=_away),
    Case("neg", lambda L, a: -a, (3, 4)),
    Case("abs", lambda L, a: a.abs(), (3, 4), sample=_away),
    Case("exp", lambda L, a: L.exp(a), (3, 4)),
    Case("log", lambda L, a: L.log(a), (3, 4), sample=_pos),
    Case("sqrt", lambda L, a: L.sqrt(a), (3, 4), sample=_pos),
    Case("tanh", lambda L, a: L.tanh(a), (3, 4)),
    Case("sigmoid", lambda L, a: L.sigmoid(a), (3, 4)),
    Case("sigmoid_large", lambda L, a: L.sigmoid(a * 50), (3, 4)),
    Case("relu", lambda L, a: L.relu(a), (3, 4), sample=_distinct),
    Case("gelu", lambda L, a: _F(L).gelu(a), (3, 4)),
    Case("gelu_tanh", lambda L, a: _F(L).gelu(a, approximate="tanh"), (3, 4)),
    Case("clamp", lambda L, a: L.clamp(a, min=-0.3, max=0.4), (3, 4), sample=_distinct),
    Case("clamp_min", lambda L, a: a.clamp(min=0.12), (3, 4), sample=_distinct),
    Case("where", lambda L, a, b: L.where(a > b, a, b), (3, 4), (4,)),
    Case("where_scalar", lambda L, a: L.where(a > 0, a, 0.0), (3, 4)),
    Case("masked_fill", lambda L, a: a.masked_fill(_t(L, a, MASK), -2.0), (4, 5)),
    Case("masked_fill_bcast", lambda L, a: a.masked_fill(_t(L, a, MASK[:1]), 3.0), (4, 5)),
    # ---- reductions ----------------------------------------------------------------------
    Case("sum", lambda L, a: a.sum(), (3, 4)),
    Case("sum_dim", lambda L, a: a.sum(dim=1), (2, 3, 4)),
    Case("sum_negdim_keep", lambda L, a: a.sum(dim=-1, keepdim=True), (2, 3, 4)),
    Case("sum_dims", lambda L, a: L.sum(a, dim=(0, 2)), (2, 3, 4)),
    Case("sum_size1", lambda L, a: a.sum(dim=1), (3, 1, 2)),
    Case("mean", lambda L, a: a.mean(), (3, 4)),
    Case("mean_dim_keep", lambda L, a: a.mean(dim=-2, keepdim=True), (2, 3, 4)),
    Case("mean_dims", lambda L, a: L.mean(a, dim=(0, -1)), (2, 3, 4)),
    Case("var", lambda L, a: a.var(), (3, 4)),
    Case("var_dim", lambda L, a: a.var(dim=1), (2, 3, 4)),
    Case("var_biased_keep", lambda L, a: a.var(dim=-1, correction=0, keepdim=True), (2, 3, 4)),
    Case("var_dims", lambda L, a: L.var(a, dim=(0, 2)), (2, 3, 4)),
    Case("std", lambda L, a: a.std(dim=0), (4, 3)),
    Case("max", lambda L, a: a.max(), (3, 4), sample=_distinct),
    Case("max_dim", lambda L, a: a.max(dim=1).values, (3, 4, 2), sample=_distinct),
    Case("max_negdim_keep", lambda L, a: a.max(dim=-1, keepdim=True)[0], (3, 4), sample=_distinct),
    Case("min", lambda L, a: L.min(a), (3, 4), sample=_distinct),
    Case("min_dim", lambda L, a: L.min(a, dim=0).values, (3, 4), sample=_distinct),
    Case("maximum", lambda L, a, b: L.maximum(a, b), (3, 4), (4,)),
    # ---- shapes ---------------------------------------------------------------------------
    Case("reshape", lambda L, a: a.reshape(4, -1) * 1.0, (2, 3, 2)),
    Case("view", lambda L, a: a.view(-1), (2, 3)),
    Case("transpose", lambda L, a: a.transpose(0, -1), (2, 3, 4)),
    Case("T", lambda L, a: a.T, (2, 3)),
    Case("permute", lambda L, a: a.permute(2, 0, 1), (2, 3, 4)),
    Case("permute_neg", lambda L, a: L.permute(a, (-1, 0, 1)), (2, 3, 4)),
    Case("expand", lambda L, a: a.expand(2, 3, 4), (3, 1)),
    Case("expand_neg1", lambda L, a: a.expand(2, -1, 4), (3, 1)),
    Case("squeeze", lambda L, a: a.squeeze(), (1, 3, 1, 2)),
    Case("squeeze_dim", lambda L, a: a.squeeze(-2), (1, 3, 1, 2)),
    Case("unsqueeze", lambda L, a: a.unsqueeze(-1), (3, 2)),
    Case("unsqueeze0", lambda L, a: L.unsqueeze(a, 0), (3, 2)),
    Case("flatten", lambda L, a: a.flatten(1), (2, 3, 4)),
    Case("flatten_all", lambda L, a: L.flatten(a), (2, 3, 4)),
    Case("cat", lambda L, a, b, c: L.cat([a, b, c], dim=1), (2, 1), (2, 3), (2, 2)),
    Case("cat_neg", lambda L, a, b: L.cat([a, b], dim=-1), (2, 3, 1), (2, 3, 2)),
    Case("stack", lambda L, a, b: L.stack([a, b], dim=-1), (2, 3), (2, 3)),
    Case("stack0", lambda L, a, b, c: L.stack((a, b, c)), (3,), (3,), (3,)),
    Case("split", lambda L, a: a.split(2, dim=1), (3, 5)),
    Case("split_sections", lambda L, a: L.split(a, [1, 3], dim=-1), (2, 4)),
    Case("chunk", lambda L, a: a.chunk(3, dim=0), (7, 2)),
    # ---- indexing -------------------------------------------------------------------------
    Case("index_int", lambda L, a: a[1], (3, 4)),
    Case("index_neg", lambda L, a: a[-1, 1:3], (3, 4)),
    Case("index_slices", lambda L, a: a[:, 1:3, ::2], (2, 4, 5)),
    Case("index_none_ellipsis", lambda L, a: a[..., None, 1], (2, 3)),
    Case("index_repeated", lambda L, a: a[_t(L, a, IDX)], (4, 3)),
    Case("index_list", lambda L, a: a[[0, 2, 2, 1]], (4, 3)),
    Case("index_negative_repeated", lambda L, a: a[_t(L, a, NEG_IDX)], (4, 3)),
    Case("index_2d_array", lambda L, a: a[_t(L, a, IDX_2D)], (4, 3)),
    Case("index_1d_tensor", lambda L, a: a[_t(L, a, IDX)] * 1.0, (4,)),
    Case("index_pairs", lambda L, a: a[_t(L, a, ROWS), _t(L, a, COLS)], (4, 5)),
    Case("index_slice_array", lambda L, a: a[1:, _t(L, a, IDX)], (3, 4)),
    Case("index_mask", lambda L, a: a[_t(L, a, MASK)], (4, 5)),
    Case("index_mask_rows", lambda L, a: a[_t(L, a, MASK[:, 0])], (4, 5)),
    # ---- matmul ---------------------------------------------------------------------------
    Case("matmul_2d", lambda L, a, b: a @ b, (3, 4), (4, 5)),
    Case("matmul_vec_mat", lambda L, a, b: a @ b, (4,), (4, 5)),
    Case("matmul_mat_vec", lambda L, a, b: L.matmul(a, b), (3, 4), (4,)),
    Case("matmul_dot", lambda L, a, b: a @ b, (4,), (4,)),
    Case("matmul_batched", lambda L, a, b: a @ b, (2, 3, 4), (2, 4, 5)),
    Case("matmul_batch_2d", lambda L, a, b: a @ b, (2, 3, 4), (4, 5)),
    Case("matmul_2d_batch", lambda L, a, b: a @ b, (3, 4), (2, 4, 5)),
    Case("matmul_bcast", lambda L, a, b: a @ b, (2, 1, 3, 4), (3, 4, 2)),
    Case("matmul_batch_vec", lambda L, a, b: a @ b, (2, 3, 4), (4,)),
    # ---- softmax family and losses --------------------------------------------------------
    Case("softmax", lambda L, a: L.softmax(a, dim=-1), (3, 5)),
    Case("softmax_dim0", lambda L, a: a.softmax(dim=0), (3, 5)),
    Case("softmax_3d", lambda L, a: _F(L).softmax(a, dim=1), (2, 3, 4)),
    Case("log_softmax", lambda L, a: L.log_softmax(a, dim=-1), (3, 5)),
    Case("log_softmax_dim0", lambda L, a: _F(L).log_softmax(a, dim=0), (3, 5)),
    Case("cross_entropy", lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET)), (6, 5)),
    Case(
        "cross_entropy_sum",
        lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET), reduction="sum"),
        (6, 5),
    ),
    Case(
        "cross_entropy_none",
        lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET), reduction="none"),
        (6, 5),
    ),
    Case("cross_entropy_ignore", lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET_IGN)), (6, 5)),
    Case(
        "cross_entropy_ignore_none",
        lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET_IGN), reduction="none"),
        (6, 5),
    ),
    Case(
        "cross_entropy_smooth",
        lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET), label_smoothing=0.1),
        (6, 5),
    ),
    Case(
        "cross_entropy_smooth_ignore",
        lambda L, a: _F(L).cross_entropy(
            a, _t(L, a, TARGET_IGN), label_smoothing=0.2, ignore_index=-100
        ),
        (6, 5),
    ),
    Case(
        "cross_entropy_smooth_sum",
        lambda L, a: _F(L).cross_entropy(
            a, _t(L, a, TARGET_IGN), label_smoothing=0.3, reduction="sum"
        ),
        (6, 5),
    ),
    Case("cross_entropy_1d", lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET[0])), (5,)),
    Case("cross_entropy_nd", lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET_3D)), (2, 5, 3)),
    Case("embedding", lambda L, w: _F(L).embedding(_t(L, w, IDS), w), (7, 3)),
    # ---- compositions ---------------------------------------------------------------------
    Case("mlp", lambda L, x, w, b: L.tanh(x @ w + b).sum(dim=-1).mean(), (5, 4), (4, 3), (3,)),
    Case("shared_subexpr", lambda L, x: x * x + x, (3, 4)),
    Case("reuse_many", lambda L, x: (x * x.exp() - x / (x * x + 1)).sum(0), (3, 4)),
]


def _inputs(case, dtype, device):
    arrays = [case.sample(s) for s in case.shapes]
    ours = [tt.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in arrays]
    ref = [torch.tensor(a, dtype=TORCH_DTYPE[np.dtype(dtype)], requires_grad=True) for a in arrays]
    return ours, ref


def _as_list(out):
    return list(out) if isinstance(out, tuple | list) else [out]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_matches_torch(case, dtype, device):
    dtype = np.dtype(dtype)
    tol = case.f32 if dtype == np.float32 else {}
    ours, ref = _inputs(case, dtype, device)
    outs, routs = _as_list(case.fn(tt, *ours)), _as_list(case.fn(torch, *ref))
    assert len(outs) == len(routs)
    loss, rloss = 0, 0
    for o, r in zip(outs, routs):
        assert o.dtype == dtype, f"{case}: output is {o.dtype}, input was {dtype}"
        assert o.device == device
        assert o.requires_grad
        assert_close(o.detach(), r, msg=f"{case} forward", **tol)
        g = RNG.standard_normal(tuple(r.shape))
        loss = loss + (o * tt.tensor(g, dtype=dtype, device=device)).sum()
        rloss = rloss + (r * torch.tensor(g, dtype=r.dtype)).sum()
    loss.backward()
    rloss.backward()
    for i, (x, rx) in enumerate(zip(ours, ref)):
        assert x.grad is not None, f"{case}: input {i} got no gradient"
        assert x.grad.dtype == dtype, f"{case}: grad of input {i} is {x.grad.dtype}"
        assert x.grad.device == device
        assert not x.grad.requires_grad
        assert_close(x.grad, rx.grad, msg=f"{case} grad of input {i}", **tol)


@pytest.mark.parametrize("case", [c for c in CASES if c.gradcheck], ids=repr)
def test_gradcheck(case, device):
    ours, _ = _inputs(case, np.float64, device)
    assert gradcheck(lambda *xs: case.fn(tt, *xs), ours, eps=1e-6, atol=1e-6, rtol=1e-4)


# ---- logits of magnitude 1e4: max-subtraction keeps everything finite ------------------
LARGE = [
    ("softmax", lambda L, a: L.softmax(a, dim=-1)),
    ("log_softmax", lambda L, a: L.log_softmax(a, dim=-1)),
    ("cross_entropy", lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET))),
    (
        "cross_entropy_smooth",
        lambda L, a: _F(L).cross_entropy(a, _t(L, a, TARGET_IGN), label_smoothing=0.1),
    ),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,fn", LARGE, ids=[n for n, _ in LARGE])
def test_large_logits_stay_finite(name, fn, dtype, device):
    a = RNG.standard_normal((6, 5)) * 1e4
    x = tt.tensor(a, dtype=dtype, device=device, requires_grad=True)
    rx = torch.tensor(a, dtype=TORCH_DTYPE[np.dtype(dtype)], requires_grad=True)
    out, rout = fn(tt, x), fn(torch, rx)
    assert np.isfinite(to_numpy(out.detach())).all(), f"{name}: non-finite output"
    # outputs of size 1e4 carry float32 rounding of 1e4 * 6e-8 ~ 1e-3
    tol = dict(rtol=1e-5, atol=2e-3) if dtype == np.float32 else dict(rtol=1e-7, atol=1e-8)
    assert_close(out.detach(), rout, **tol)
    g = RNG.standard_normal(tuple(rout.shape))
    (out * tt.tensor(g, dtype=dtype, device=device)).sum().backward()
    (rout * torch.tensor(g, dtype=rout.dtype)).sum().backward()
    assert np.isfinite(to_numpy(x.grad)).all(), f"{name}: non-finite gradient"
    assert_close(x.grad, rx.grad, **(dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else {}))


# ---- large arrays take other code paths (tiled copies, sparse row sums, layouts) -----------
def test_large_gradients_match_torch(device):
    """Sizes past the thresholds of the fast paths: a transposed leaf gradient (tiled copy),
    x @ W.T as in Linear (W's gradient computed in W.T's layout), rows gathered with repeats
    (the sparse-product scatter) and an embedding; every gradient C-contiguous like PyTorch's."""
    n = 300  # 90,000 elements: above the 65,536 threshold of the tiled copy
    xs = [RNG.standard_normal((n, n)) for _ in range(3)]
    xs[1] /= n  # keeps x @ w.T small: tanh' = 1 - t^2 loses float32 digits near saturation
    ids = RNG.integers(-n, n, 2 * n)
    ours = [tt.tensor(a, dtype=tt.float32, device=device, requires_grad=True) for a in xs]
    ref = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in xs]

    def f(L, x, w, e):
        idx = _t(L, x, ids)
        return (
            (x.T * 0.5).sum(0) + (x @ w.T).tanh()[idx].sum(0) + _F(L).embedding(idx % n, e).mean(0)
        )

    out, rout = f(tt, *ours), f(torch, *ref)
    assert_close(out.detach(), rout, rtol=1e-4, atol=1e-4)
    g = RNG.standard_normal(n)
    (out * tt.tensor(g, dtype=tt.float32, device=device)).sum().backward()
    (rout * torch.tensor(g, dtype=torch.float32)).sum().backward()
    for x, rx in zip(ours, ref):
        assert x.grad.data.flags.c_contiguous
        assert_close(x.grad, rx.grad, rtol=1e-4, atol=1e-4)  # sums of 600 float32 terms


# ---- softmax on fully masked rows: NaN as in PyTorch, or 0 with masked_softmax -------------
@pytest.mark.filterwarnings("ignore:invalid value encountered")  # -inf - (-inf): the NaN row
def test_softmax_of_an_all_minus_inf_row(device):
    """torch.softmax gives NaN on a row that is all -inf; masked_softmax (attention's weights
    for a query with no allowed key) gives 0 there and a zero gradient, and equals softmax on
    every other row."""
    a = RNG.standard_normal((4, 5))
    a[1] = -np.inf
    a[2, :3] = -np.inf
    x = tt.tensor(a, dtype=tt.float64, device=device, requires_grad=True)
    ours, ref = to_numpy(tt.softmax(x, -1).detach()), torch.softmax(torch.tensor(a), -1)
    assert np.isnan(ours[1]).all() and torch.isnan(ref[1]).all()
    assert_close(ours[[0, 2, 3]], ref[[0, 2, 3]])
    y = tt.ops.masked_softmax(x, -1)
    assert_close(y.detach()[1], np.zeros(5))
    assert_close(y.detach()[[0, 2, 3]], ref[[0, 2, 3]])
    g = RNG.standard_normal((4, 5))
    (y * tt.tensor(g, device=device)).sum().backward()
    rx = torch.tensor(a, requires_grad=True)
    (torch.softmax(rx, -1) * torch.tensor(g)).sum().backward()
    grad = to_numpy(x.grad)
    assert_close(grad[1], np.zeros(5))
    assert_close(grad[[0, 2, 3]], rx.grad[[0, 2, 3]])
    finite = tt.tensor(RNG.standard_normal((3, 4)), device=device, requires_grad=True)
    assert gradcheck(lambda t: tt.ops.masked_softmax(t, 0), [finite.double()])


def test_tensor_gelu_takes_the_path_of_f_gelu(monkeypatch, device):
    """x.gelu() and tinytorch.gelu call nn.functional.gelu (the fused kernel where it applies)."""
    calls = []
    real = tt.nn.functional.gelu

    def spy(input, approximate="none"):
        calls.append(approximate)
        return real(input, approximate)

    monkeypatch.setattr(tt.nn.functional, "gelu", spy)
    x = tt.randn(4, 3, device=device)
    assert_close(x.gelu(), tt.ops.gelu(x))
    x.gelu(approximate="tanh")
    assert calls == ["none", "tanh"]
