"""cross_entropy (the fused op behind nn.functional.cross_entropy) and nn.CrossEntropyLoss
against torch: class weights, ignore_index, label smoothing, every reduction, (C,), (N, C) and
(N, C, d1, d2) inputs, float64 and float32; gradients also against finite differences.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn
from tinytorch.gradcheck import gradcheck
from tinytorch.nn import functional as F

pytestmark = pytest.mark.ch03

C = 5
SHAPES = {"N,C": (6, C), "C": (C,), "N,C,d1,d2": (3, C, 2, 2)}
OPTIONS = [  # (weighted, label_smoothing, ignore_index)
    (w, eps, ign) for w, eps, ign in itertools.product([False, True], [0.0, 0.1], [-100, 2])
]


def _case(shape, ignore_index, dtype, seed=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = rng.integers(0, C, size=tshape)
    if t.ndim:  # at least one ignored target (and one that is not)
        t.reshape(-1)[0] = ignore_index
        t.reshape(-1)[1] = 4
    w = (rng.random(C) + 0.5).astype(dtype)
    return x, t, w


def _both(x, t, w, weighted, eps, ignore_index, reduction, device):
    xt = tt.tensor(x, device=device, requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    out = F.cross_entropy(
        xt,
        tt.tensor(t, device=device),
        weight=tt.tensor(w, device=device) if weighted else None,
        **kw,
    )
    ref = torch.nn.functional.cross_entropy(
        xr, torch.tensor(t), weight=torch.tensor(w) if weighted else None, **kw
    )
    return xt, xr, out, ref


def _every_case(test):
    """Parametrize a test over dtype x reduction x shape (the test loops over OPTIONS)."""
    dtypes = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
    reductions = pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
    return dtypes(reductions(pytest.mark.parametrize("shape", SHAPES)(test)))


def _every_option(shape, reduction, dtype, device):
    """(message, xt, xr, out, ref) for each of OPTIONS, on a fresh case of SHAPES[shape]."""
    for weighted, eps, ign in OPTIONS:
        x, t, w = _case(SHAPES[shape], ign, dtype)
        msg = f"weight={weighted} label_smoothing={eps} ignore_index={ign}"
        yield (msg, *_both(x, t, w, weighted, eps, ign, reduction, device))


@pytest.mark.exercise("cross_entropy_forward")
@_every_case
def test_cross_entropy_matches_torch(shape, reduction, dtype, device):
    for msg, _, _, out, ref in _every_option(shape, reduction, dtype, device):
        assert out.dtype == np.dtype(dtype), msg
        assert_close(out, ref, msg=msg)


@pytest.mark.exercise("cross_entropy_backward")
@_every_case
def test_cross_entropy_gradient_matches_torch(shape, reduction, dtype, device):
    for msg, xt, xr, out, ref in _every_option(shape, reduction, dtype, device):
        g = np.asarray(np.random.randn(*ref.shape), dtype=dtype)
        out.backward(tt.tensor(g, device=device))
        ref.backward(torch.tensor(g))
        assert_close(xt.grad, xr.grad, msg=msg)


@pytest.mark.exercise("cross_entropy_backward")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradcheck(reduction):
    """The gradient against central differences, float64, with weights and smoothing."""
    for weighted, eps, ign in OPTIONS:
        x, t, w = _case((4, C), ign, np.float64)
        tgt, wt = tt.tensor(t), tt.tensor(w) if weighted else None
        gradcheck(
            lambda a, tgt=tgt, wt=wt, eps=eps, ign=ign: F.cross_entropy(
                a, tgt, wt, ign, reduction, eps
            ),
            [tt.tensor(x, requires_grad=True)],
        )


@pytest.mark.exercise("cross_entropy_forward")
def test_cross_entropy_is_stable_for_huge_logits():
    """exp(1e4) overflows; log-sum-exp with the row max subtracted first does not."""
    x = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0]])
    t = np.array([0, 2])
    for dtype in (np.float64, np.float32):
        xt = tt.tensor(x.astype(dtype), requires_grad=True)
        out = F.cross_entropy(xt, tt.tensor(t))
        ref = torch.nn.functional.cross_entropy(torch.tensor(x.astype(dtype)), torch.tensor(t))
        assert np.isfinite(to_numpy(out)).all()
        assert_close(out, ref)
        out.backward()
        assert np.isfinite(to_numpy(xt.grad)).all()


def test_cross_entropy_all_ignored_and_probability_targets():
    x = np.random.randn(3, C)
    t = np.full(3, -100)
    w = np.random.rand(C) + 0.5
    for weight in (None, w):
        out = F.cross_entropy(tt.tensor(x), tt.tensor(t), None if weight is None else tt.tensor(w))
        ref = torch.nn.functional.cross_entropy(
            torch.tensor(x), torch.tensor(t), None if weight is None else torch.tensor(w)
        )
        assert np.isnan(to_numpy(out)) and torch.isnan(ref)  # 0 / 0, as PyTorch
    probs = np.random.dirichlet(np.ones(C), size=3)
    for red in ("mean", "sum", "none"):
        xt = tt.tensor(x, requires_grad=True)
        xr = torch.tensor(x, requires_grad=True)
        out = F.cross_entropy(
            xt, tt.tensor(probs), tt.tensor(w), reduction=red, label_smoothing=0.2
        )
        ref = torch.nn.functional.cross_entropy(
            xr, torch.tensor(probs), torch.tensor(w), reduction=red, label_smoothing=0.2
        )
        assert_close(out, ref)
        out.sum().backward()
        ref.sum().backward()
        assert_close(xt.grad, xr.grad)


def test_cross_entropy_loss_module_matches_torch(device):
    x, t, w = _case((4, C, 3), 1, np.float64)
    kw = dict(ignore_index=1, label_smoothing=0.05, reduction="sum")
    ours = nn.CrossEntropyLoss(weight=tt.tensor(w), **kw).to(device)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(w), **kw)
    assert repr(ours) == repr(ref)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    assert ours.weight.device == device  # a buffer: .to() moves it
    xt = tt.tensor(x, device=device, requires_grad=True)
    xr = torch.tensor(x, requires_grad=True)
    out, rout = ours(xt, tt.tensor(t, device=device)), ref(xr, torch.tensor(t))
    assert_close(out, rout)
    out.backward()
    rout.backward()
    assert_close(xt.grad, xr.grad)
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    lp = np.log(np.random.dirichlet(np.ones(C), size=4))
    assert_close(
        nn.NLLLoss(tt.tensor(w))(tt.tensor(lp), tt.tensor(t[:, 0])),
        torch.nn.NLLLoss(torch.tensor(w))(torch.tensor(lp), torch.tensor(t[:, 0])),
    )


def test_cross_entropy_errors_name_the_problem():
    x = tt.randn(4, C)
    with pytest.raises(ValueError, match=r"weight must be a tensor of shape \(5,\)"):
        F.cross_entropy(x, tt.tensor([0, 1, 2, 3]), weight=tt.ones(4))
    with pytest.raises(IndexError, match="target 5 is out of range for 5 classes"):
        F.cross_entropy(x, tt.tensor([0, 1, 5, 3]))
    with pytest.raises(TypeError, match="int64"):
        F.cross_entropy(x, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="target shape"):
        F.cross_entropy(x, tt.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, tt.tensor([0, 1, 2, 3]), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, tt.tensor([0, 1, 2, 3]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction="):
        nn.CrossEntropyLoss(size_average=True)
