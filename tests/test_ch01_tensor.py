"""The Tensor itself: creation functions, dtypes, devices, conversions, the repr, seeding,
and the ops that return tensors without a gradient (comparisons, argmax, topk).

Compared with PyTorch wherever PyTorch has the same function (dtype inference, shapes,
values); random tensors are checked for their distribution and for reproducibility.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt

pytestmark = pytest.mark.ch01

RNG = np.random.default_rng()
DTYPES = {
    tt.float32: torch.float32,
    tt.float64: torch.float64,
    tt.int64: torch.int64,
    tt.bool: torch.bool,
}


def _same_dtype(ours, ref):
    assert DTYPES[ours.dtype] == ref.dtype, f"{ours.dtype} vs torch {ref.dtype}"


# ---- creation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data", [[1.5, -2.0], [[1, 2], [3, 4]], [True, False], 3.25, 7, True, [[1, 2.5]], []]
)
def test_tensor_infers_dtype_like_torch(data, device):
    ours, ref = tt.tensor(data, device=device), torch.tensor(data)
    _same_dtype(ours, ref)
    assert ours.shape == tuple(ref.shape) and ours.device == device
    assert (to_numpy(ours) == ref.numpy()).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_tensor_from_numpy_arrays_keeps_or_sets_dtype(dtype, device):
    a = (RNG.standard_normal((2, 3)) * 3).astype(dtype)
    t = tt.tensor(a, device=device)
    assert t.dtype == np.dtype(dtype) and (to_numpy(t) == a).all()
    a_copy = a.copy()
    a[...] = 0  # tensor() copies
    assert (to_numpy(t) == a_copy).all()
    assert tt.tensor(a_copy, dtype=tt.float64, device=device).dtype == tt.float64
    assert tt.tensor(a_copy, dtype="float32", device=device).dtype == tt.float32


def test_from_numpy_shares_memory():
    a = RNG.standard_normal(4)
    t = tt.from_numpy(a)
    assert t.dtype == tt.float64 and t.device == "cpu"
    a[0] = 42.0
    assert t[0].item() == 42.0
    with pytest.raises(TypeError, match="numpy.ndarray"):
        tt.from_numpy([1.0, 2.0])


@pytest.mark.parametrize("name", ["zeros", "ones"])
def test_zeros_ones(name, device):
    for args in [(2, 3), ((2, 3),), ([4],), ((),)]:
        ours = getattr(tt, name)(*args, device=device)
        ref = getattr(torch, name)(*args)
        _same_dtype(ours, ref)
        assert ours.shape == tuple(ref.shape) and ours.device == device
        assert (to_numpy(ours) == ref.numpy()).all()
    t = getattr(tt, name)(3, dtype=tt.float64, device=device, requires_grad=True)
    assert t.dtype == tt.float64 and t.requires_grad and t.is_leaf


@pytest.mark.parametrize("fill", [1.5, 3, True])
def test_full(fill, device):
    ours, ref = tt.full((2, 3), fill, device=device), torch.full((2, 3), fill)
    _same_dtype(ours, ref)
    assert (to_numpy(ours) == ref.numpy()).all()
    assert tt.full((2,), 2, dtype=tt.float32, device=device).dtype == tt.float32


@pytest.mark.parametrize("args", [(5,), (2, 9), (1, 10, 3), (0, 1, 0.25), (-1.5, 2.0, 0.5), (3.0,)])
def test_arange(args, device):
    ours, ref = tt.arange(*args, device=device), torch.arange(*args)
    _same_dtype(ours, ref)
    assert_close(ours, ref.numpy())
    assert tt.arange(4, dtype=tt.float64, device=device).dtype == tt.float64


def test_random_creation(device):
    for fn in (tt.randn, tt.rand):
        t = fn(200, 50, device=device)
        assert t.shape == (200, 50) and t.dtype == tt.float32 and t.device == device
        assert fn(3, dtype=tt.float64, device=device).dtype == tt.float64
        assert fn((2, 2), device=device).shape == (2, 2)
    x = to_numpy(tt.randn(20000, device=device)).astype(np.float64)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05  # ~7 standard errors
    u = to_numpy(tt.rand(20000, device=device))
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02
    r = tt.randint(3, 9, (5000,), device=device)
    assert r.dtype == tt.int64 and r.device == device
    assert set(np.unique(to_numpy(r))) == set(range(3, 9))
    r = tt.randint(4, (2, 3), device=device)  # torch.randint(high, size)
    assert r.shape == (2, 3) and to_numpy(r).max() < 4 and to_numpy(r).min() >= 0
    p = tt.randperm(50, device=device)
    assert p.dtype == tt.int64 and sorted(p.tolist()) == list(range(50))
    with pytest.raises(TypeError, match="floating-point"):
        tt.randn(3, dtype=tt.int64)


def test_like_functions(device):
    x = tt.randn(3, 4, dtype=tt.float64, device=device)
    for fn, value in [(tt.zeros_like, 0.0), (tt.ones_like, 1.0)]:
        t = fn(x)
        assert t.shape == x.shape and t.dtype == tt.float64 and t.device == device
        assert (to_numpy(t) == value).all()
    assert tt.zeros_like(x, dtype=tt.float32).dtype == tt.float32
    f = tt.full_like(x, 2.5)
    assert f.dtype == tt.float64 and (to_numpy(f) == 2.5).all()
    for fn in (tt.randn_like, tt.rand_like):
        t = fn(x)
        assert t.shape == x.shape and t.dtype == tt.float64 and t.device == device
    r = tt.randint_like(x, 5)
    assert r.shape == x.shape and r.dtype == tt.float64 and to_numpy(r).max() < 5
    assert tt.empty_like(x).shape == x.shape
    assert tt.ones_like(x, requires_grad=True).requires_grad


def test_manual_seed_reproduces(device):
    tt.manual_seed(1234)
    a = [
        tt.randn(5, device=device),
        tt.rand(3, device=device),
        tt.randint(0, 100, (4,), device=device),
    ]
    tt.manual_seed(1234)
    b = [
        tt.randn(5, device=device),
        tt.rand(3, device=device),
        tt.randint(0, 100, (4,), device=device),
    ]
    for x, y in zip(a, b):
        assert (to_numpy(x) == to_numpy(y)).all()
    tt.manual_seed(1235)
    assert not (to_numpy(tt.randn(5, device=device)) == to_numpy(a[0])).all()


# ---- attributes and conversions --------------------------------------------------------
def test_attributes(device):
    x = tt.randn(2, 3, 4, device=device)
    assert x.shape == (2, 3, 4) and isinstance(x.shape, tuple)
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.size() == (2, 3, 4) and x.size(-1) == 4
    assert x.dtype == tt.float32 and x.device == device
    assert x.is_leaf and x.grad is None and not x.requires_grad
    assert tt.randn(2, 3, device=device).T.shape == (3, 2)


def test_numpy_item_tolist(device):
    a = RNG.standard_normal((2, 3))
    x = tt.tensor(a, device=device)
    n = x.numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float64 and (n == a).all()
    assert x[1, 2].item() == a[1, 2] and isinstance(x[1, 2].item(), float)
    assert isinstance(tt.tensor([3], device=device).item(), int)
    assert x.tolist() == a.tolist()
    assert float(x[0, 0]) == a[0, 0] and int(tt.tensor(7, device=device)) == 7
    assert bool(tt.tensor(True, device=device)) and not bool(tt.tensor(0.0, device=device))
    assert f"{tt.tensor(2.0, device=device):.2f}" == "2.00"
    with pytest.raises(ValueError, match=r"one element.*\(2, 3\)"):
        x.item()
    with pytest.raises(RuntimeError, match="requires grad"):
        tt.tensor(a, requires_grad=True).numpy()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)


def test_to_float_double(device):
    x = tt.randn(3, device=device)
    assert x.to(device) is x and x.to(tt.float32) is x
    d = x.double()
    assert d.dtype == tt.float64 and d.device == device
    assert_close(d, to_numpy(x).astype(np.float64))
    assert d.float().dtype == tt.float32
    assert x.to(dtype=tt.float64).dtype == tt.float64 and x.to("float64").dtype == tt.float64
    assert x.long().dtype == tt.int64 and x.to(tt.bool).dtype == tt.bool
    c = x.to("cpu")
    assert c.device == "cpu" and isinstance(c.data, np.ndarray)
    # a cast inside a graph passes the gradient back, converted to the input's dtype
    w = tt.randn(3, device=device, requires_grad=True)
    (w.double() * 2).sum().backward()
    assert w.grad.dtype == tt.float32 and (to_numpy(w.grad) == 2).all()


def test_to_cuda_and_back(device):
    if device != "cuda":
        if not tt.cuda.is_available():  # asking for the missing GPU is a clear error
            with pytest.raises(RuntimeError, match="'cuda' was requested but is not available"):
                tt.zeros(2, device="cuda")
        return
    x = tt.randn(3, requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and y.requires_grad
    (y * 3).sum().backward()
    assert x.grad.device == "cpu" and (x.grad.numpy() == 3).all()


def test_unknown_device_and_dtype():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        tt.zeros(2, device="tpu")
    with pytest.raises(TypeError, match="unknown dtype 'float8'"):
        tt.zeros(2, dtype="float8")


def test_clone_contiguous_detach(device):
    x = tt.randn(3, 4, device=device, requires_grad=True)
    c = x.clone()
    assert c.requires_grad and c.data is not x.data
    c.sum().backward()
    assert (to_numpy(x.grad) == 1).all()
    d = x.detach()
    assert not d.requires_grad and d.data is x.data  # shares memory, as in PyTorch
    t = x.T.contiguous()
    assert t.data.flags.c_contiguous and t.requires_grad
    assert_close(t.detach(), to_numpy(x.detach()).T)


# ---- repr ------------------------------------------------------------------------------
def test_repr_matches_torch_layout():
    for data in [
        [1.0, 2.5],
        [1.0, 2.0],
        [[1e-5, 1.0]],
        [-1.0, 2.5, 300.0],
        3.5,
        [1, 2, 3],
        [True, False],
        [[0.25, -4.0], [1.0, 7.125]],
    ]:
        expected = repr(torch.tensor(data)).replace("torch.", "tinytorch.")
        assert repr(tt.tensor(data)) == expected
    assert (
        repr(tt.tensor([1.0, 2.0], dtype=tt.float64)) == "tensor([1., 2.], dtype=tinytorch.float64)"
    )
    assert repr(tt.tensor([1.5], requires_grad=True)) == "tensor([1.5000], requires_grad=True)"
    assert "grad_fn=<MulBackward>" in repr(tt.tensor([1.5], requires_grad=True) * 2)
    big = repr(tt.randn(100, 100))
    assert "..." in big and len(big.splitlines()) == 7  # summarized, as PyTorch does
    assert str(tt.tensor([0.5])) == "tensor([0.5000])"


# ---- ops without gradient ----------------------------------------------------------------
CMP = ["__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"]


@pytest.mark.parametrize("op", CMP)
def test_comparisons(op, device):
    a = RNG.integers(0, 3, (3, 4)).astype(np.float64)
    b = RNG.integers(0, 3, (4,)).astype(np.float64)
    x = tt.tensor(a, device=device, requires_grad=True)
    out = getattr(x, op)(tt.tensor(b, device=device))
    ref = getattr(torch.tensor(a), op)(torch.tensor(b))
    assert out.dtype == tt.bool and not out.requires_grad
    assert (to_numpy(out) == ref.numpy()).all()
    scalar = getattr(x, op)(1.0)
    assert (to_numpy(scalar) == getattr(torch.tensor(a), op)(1.0).numpy()).all()


def test_argmax_topk_no_grad(device):
    a = RNG.standard_normal((4, 6))
    x, r = tt.tensor(a, device=device, requires_grad=True), torch.tensor(a)
    for dim, keep in [(None, False), (1, False), (-1, True), (0, True)]:
        for name in ("argmax", "argmin"):
            kw = {} if dim is None else dict(dim=dim, keepdim=keep)
            out, ref = getattr(x, name)(**kw), getattr(r, name)(**kw)
            assert out.dtype == tt.int64 and not out.requires_grad
            assert out.shape == tuple(ref.shape) and (to_numpy(out) == ref.numpy()).all()
    for k, dim, largest in [(3, -1, True), (2, 0, False), (1, 1, True)]:
        v, i = x.topk(k, dim=dim, largest=largest)
        rv, ri = r.topk(k, dim=dim, largest=largest)
        assert not v.requires_grad and i.dtype == tt.int64
        assert_close(v, rv)
        assert (to_numpy(i) == ri.numpy()).all()
    m = x.max(dim=1)
    assert m.indices.dtype == tt.int64 and not m.indices.requires_grad
    assert (to_numpy(m.indices) == r.max(dim=1).indices.numpy()).all()
    s = (x > 0).sum()
    assert s.dtype == tt.int64 and s.item() == int((a > 0).sum())
    assert bool((x > -100).all()) and not bool((x > 100).any())


# ---- dtypes of mixed operands: PyTorch's rules where NumPy's differ -------------------------
PROMOTIONS = [
    ("int / int", lambda L, i, f, d: i / 2),
    ("int + float scalar", lambda L, i, f, d: i + 0.5),
    ("int * int", lambda L, i, f, d: i * 3),
    ("float32 + int tensor", lambda L, i, f, d: f + i),
    ("int tensor - float32", lambda L, i, f, d: i - f),
    ("float64 + int tensor", lambda L, i, f, d: d + i),
    ("float32 * float64", lambda L, i, f, d: f * d),
    ("float32 * numpy float64 scalar", lambda L, i, f, d: f * np.float64(1.5)),
    ("float32 ** int scalar", lambda L, i, f, d: f**2),
    ("int ** float scalar", lambda L, i, f, d: i**0.5),
    ("where int/float scalar", lambda L, i, f, d: L.where(i > 1, i, 0.5)),
    ("int // int", lambda L, i, f, d: i // 2),
    ("int % int", lambda L, i, f, d: i % 2),
    ("bool + int", lambda L, i, f, d: (i > 1) + i),
    ("float32 % float scalar", lambda L, i, f, d: f % 0.3),
]


@pytest.mark.parametrize("name,fn", PROMOTIONS, ids=[n for n, _ in PROMOTIONS])
def test_result_dtypes_follow_torch(name, fn, device):
    i, f, d = np.arange(1, 4), RNG.standard_normal(3), RNG.standard_normal(3)
    ours = fn(
        tt,
        tt.tensor(i, device=device),
        tt.tensor(f, dtype=tt.float32, device=device),
        tt.tensor(d, device=device),
    )
    ref = fn(torch, torch.tensor(i), torch.tensor(f, dtype=torch.float32), torch.tensor(d))
    _same_dtype(ours, ref)
    assert_close(ours, ref.numpy())


def test_zero_dim_tensors_keep_arrays_and_grads(device):
    x = tt.tensor(0.7, device=device, requires_grad=True)
    for fn in (lambda t: t * t, tt.sigmoid, tt.relu, lambda t: t.exp().log(), lambda t: t.sum()):
        x.grad = None
        y = fn(x)
        y.backward()
        assert y.shape == () and x.grad.shape == () and x.grad.device == device
        assert x.grad.dtype == tt.float32


def test_mixed_devices_error_without_a_gpu():
    """The check in Function.apply, exercised on CPU-only machines with a stand-in array that
    is not a NumPy array (what a CuPy array is to tinytorch). The real two-device case runs in
    test_ch01_autograd.py where a GPU is present."""

    class FakeGPUArray:
        shape, dtype, ndim = (2, 3), np.dtype("float32"), 2

    a = tt.randn(2, 3, requires_grad=True)
    b = tt.Tensor._wrap(FakeGPUArray())
    assert b.device == "cuda"
    cases = [
        (lambda: a * b, "Mul"),
        (lambda: b - a, "Sub"),
        (lambda: tt.where(a > 0, a, b), "Where"),
    ]
    for fn, op in cases:
        with pytest.raises(RuntimeError, match=rf"{op}: .*same device.*'c.*', 'c.*'.*\(2, 3\)"):
            fn()
