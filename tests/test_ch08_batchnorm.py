"""Chapter 08: nn.BatchNorm1d / BatchNorm2d against torch.nn over several training steps
(outputs, gradients, running buffers), finite-difference gradients, and the buffers' keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn
from tinytorch.gradcheck import gradcheck  # the one import of it in this file
from tinytorch.nn.batchnorm import batch_norm

pytestmark = pytest.mark.ch08

_TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def _pair(cls, C, dtype, device, **kw):
    ours = getattr(nn, cls)(C, **kw).to(dtype).to(device)
    ref = getattr(torch.nn, cls)(C, **kw).to(_TORCH_DTYPE[dtype])
    if ours.affine:  # non-trivial gain and shift
        rng = np.random.default_rng()
        w, b = rng.uniform(0.5, 1.5, C), rng.standard_normal(C)
        with torch.no_grad():
            ref.weight.copy_(torch.tensor(w))
            ref.bias.copy_(torch.tensor(b))
        ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "cls, shape",
    [("BatchNorm1d", (6, 4)), ("BatchNorm1d", (5, 4, 7)), ("BatchNorm2d", (3, 4, 5, 2))],
)
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"momentum": None},
        {"momentum": 0.3, "affine": False},
        {"track_running_stats": False},
        {"eps": 1e-3, "momentum": None, "affine": False},
    ],
)
def test_matches_torch_over_training_steps_then_eval(cls, shape, kw, dtype, device):
    C = shape[1]
    ours, ref = _pair(cls, C, dtype, device, **kw)
    rng = np.random.default_rng()
    tol = {} if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    for step in range(3):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        xt = tt.tensor(x, device=device, requires_grad=True)
        xr = torch.tensor(x, requires_grad=True)
        out, ref_out = ours(xt), ref(xr)
        assert_close(out, ref_out, msg=f"output at step {step}", **tol)
        (out * tt.tensor(g, device=device)).sum().backward()
        (ref_out * torch.tensor(g)).sum().backward()
        assert_close(xt.grad, xr.grad, msg=f"input grad at step {step}", **tol)
        if ours.affine:
            assert_close(ours.weight.grad, ref.weight.grad, msg="weight grad", **tol)
            assert_close(ours.bias.grad, ref.bias.grad, msg="bias grad", **tol)
            ours.zero_grad()
            ref.zero_grad()
        theirs = ref.state_dict()
        for k, v in ours.state_dict().items():  # running_mean, running_var, num_batches_tracked
            assert_close(v, theirs[k], msg=f"{k} after step {step}", **tol)
    ours.eval()
    ref.eval()
    x = rng.standard_normal((1,) + shape[1:]).astype(dtype)  # one example: eval needs no batch
    if kw.get("track_running_stats", True):
        assert_close(ours(tt.tensor(x, device=device)), ref(torch.tensor(x)), **tol)
    else:  # no running estimates: batch statistics even in eval, as torch
        x = rng.standard_normal(shape).astype(dtype)
        assert_close(ours(tt.tensor(x, device=device)), ref(torch.tensor(x)), **tol)


@pytest.mark.exercise("batch_norm")
def test_momentum_none_is_the_cumulative_average_of_the_batches():
    bn = nn.BatchNorm1d(3, momentum=None).double()
    rng = np.random.default_rng()
    xs = [rng.standard_normal((int(rng.integers(2, 9)), 3)) * 2 + 1 for _ in range(5)]
    for x in xs:
        bn(tt.tensor(x))
    assert int(bn.num_batches_tracked.item()) == 5
    assert_close(bn.running_mean, np.mean([x.mean(0) for x in xs], axis=0))
    assert_close(bn.running_var, np.mean([x.var(0, ddof=1) for x in xs], axis=0))


def test_state_dict_keys_and_loading_from_torch():
    ref = torch.nn.BatchNorm1d(5)
    ref(torch.randn(8, 5) * 3 + 2)  # non-trivial running statistics
    ours = nn.BatchNorm1d(5)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert list(ours.state_dict()) == [
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.shape == ()
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]  # buffers: no grad
    ours.load_state_dict(ref.state_dict())
    ours.eval()
    ref.eval()
    x = np.random.default_rng().standard_normal((2, 5)).astype(np.float32)
    assert_close(ours(tt.tensor(x)), ref(torch.tensor(x)))
    assert list(nn.BatchNorm1d(5, track_running_stats=False).state_dict()) == ["weight", "bias"]
    assert list(nn.BatchNorm2d(5, affine=False).state_dict()) == list(
        torch.nn.BatchNorm2d(5, affine=False).state_dict()
    )


@pytest.mark.exercise("batch_norm")
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2), (3, 3, 2, 2)])
def test_gradcheck_training_mode(shape):
    rng = np.random.default_rng()
    x = tt.tensor(rng.standard_normal(shape), requires_grad=True)
    w = tt.tensor(rng.uniform(0.5, 1.5, 3), requires_grad=True)
    b = tt.tensor(rng.standard_normal(3), requires_grad=True)
    rm, rv = tt.zeros(3, dtype=tt.float64), tt.ones(3, dtype=tt.float64)
    assert gradcheck(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=True), (x, w, b))
    assert gradcheck(lambda x, w, b: batch_norm(x, None, None, w, b, training=True), (x, w, b))


def test_gradcheck_eval_mode():
    rng = np.random.default_rng()
    bn = nn.BatchNorm1d(4).double()
    bn(tt.tensor(rng.standard_normal((6, 4)) * 2))
    bn.eval()
    x = tt.tensor(rng.standard_normal((3, 4, 2)), requires_grad=True)
    assert gradcheck(lambda x, w, b: bn(x), (x, bn.weight, bn.bias))
    assert bn.running_mean.grad is None and not bn.running_mean.requires_grad


def test_train_and_eval_modes_differ_and_eval_leaves_the_buffers():
    bn = nn.BatchNorm1d(2)
    x = tt.tensor(np.random.default_rng().standard_normal((4, 2)).astype(np.float32) * 5 + 3)
    train_out = to_numpy(bn(x))
    np.testing.assert_allclose(train_out.mean(0), 0, atol=1e-5)  # normalized by the batch
    bn.eval()
    before = [to_numpy(b).copy() for b in bn.buffers()]
    eval_out = to_numpy(bn(x))
    assert not np.allclose(eval_out, train_out)
    for b, old in zip(bn.buffers(), before):
        np.testing.assert_array_equal(to_numpy(b), old)


def test_errors_name_the_problem():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="expected 2D or 3D input, got 4D"):
        bn(tt.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="input has 4 channels"):
        bn(tt.zeros(2, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(tt.zeros(1, 3))
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(tt.zeros(2, 3))
    assert "BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True" in repr(bn)
