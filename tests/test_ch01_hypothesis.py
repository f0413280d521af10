"""Hypothesis: random shapes and broadcasts for elementwise ops and reductions, vs PyTorch.

Shapes are drawn as a pair that broadcasts (numpy's rules: dims aligned from the right, equal
or 1, missing leading dims), values as standard normals; each example compares the output and
both inputs' gradients with PyTorch in float64 (helpers' tolerance) and float32 (rtol 1e-5,
atol 1e-5: summation order differs between the libraries).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinytorch as tt

pytestmark = pytest.mark.ch01

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DTYPES = st.sampled_from([np.float64, np.float32])
TOL = {np.float64: {}, np.float32: dict(rtol=1e-5, atol=1e-5)}

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 0.5),
    "pow": lambda a, b: (a * a + 0.5) ** b,
    "mul_add": lambda a, b: a * b + b - 2.0 * a,
}

UNARY = {
    "exp": lambda a: a.exp(),
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "relu": lambda a: a.relu(),
    "abs": lambda a: a.abs(),
    "log": lambda a: (a * a + 0.1).log(),
    "sqrt": lambda a: (a * a + 0.1).sqrt(),
    "neg_pow": lambda a: -(a**3),
}


def _pair(a, dtype, device):
    return (
        tt.tensor(a, dtype=dtype, device=device, requires_grad=True),
        torch.tensor(a.astype(dtype), requires_grad=True),
    )


def _check(ours, ref, xs, ts, dtype, device):
    g = np.random.default_rng().standard_normal(tuple(ref.shape)).astype(dtype)
    assert ours.dtype == np.dtype(dtype)
    assert_close(ours.detach(), ref, **TOL[dtype])
    ours.backward(tt.tensor(g, device=device))
    ref.backward(torch.from_numpy(g))
    for x, t in zip(xs, ts):
        assert x.grad.dtype == np.dtype(dtype)
        assert_close(x.grad, t.grad, **TOL[dtype])


@SETTINGS
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    op=st.sampled_from(sorted(BINARY)),
    dtype=DTYPES,
    data=st.data(),
)
def test_binary_broadcasting(shapes, op, dtype, data, device):
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    (x, t), (y, u) = (
        _pair(rng.standard_normal(sa), dtype, device),
        _pair(rng.standard_normal(sb), dtype, device),
    )
    _check(BINARY[op](x, y), BINARY[op](t, u), (x, y), (t, u), dtype, device)


@SETTINGS
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=5),
    op=st.sampled_from(sorted(UNARY)),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_unary(shape, op, dtype, seed, device):
    x, t = _pair(np.random.default_rng(seed).standard_normal(shape), dtype, device)
    _check(UNARY[op](x), UNARY[op](t), (x,), (t,), dtype, device)


@st.composite
def shape_and_dims(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    nd = len(shape)
    dims = draw(
        st.one_of(
            st.none(),
            st.integers(-nd, nd - 1),
            st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True).map(
                lambda ds: tuple(d - nd if i % 2 else d for i, d in enumerate(ds))
            ),
        )
    )
    return shape, dims, draw(st.booleans())


REDUCTIONS = ["sum", "mean", "var", "max", "min", "softmax", "log_softmax"]


@SETTINGS
@given(
    sdk=shape_and_dims(),
    op=st.sampled_from(REDUCTIONS),
    dtype=DTYPES,
    seed=st.integers(0, 2**32 - 1),
)
def test_reductions(sdk, op, dtype, seed, device):
    shape, dims, keepdim = sdk
    a = np.random.default_rng(seed).standard_normal(shape)
    x, t = _pair(a, dtype, device)
    if op in ("sum", "mean", "var"):
        if (
            op == "var"
            and (
                int(np.prod(shape))
                if dims is None
                else int(np.prod([shape[d] for d in ((dims,) if isinstance(dims, int) else dims)]))
            )
            < 2
        ):
            return  # one element: the unbiased variance is nan in both libraries
        if dims is None:
            ours, ref = getattr(x, op)(), getattr(t, op)()
        else:
            ours = getattr(x, op)(dim=dims, keepdim=keepdim)
            ref = getattr(t, op)(dim=dims, keepdim=keepdim)
    else:
        d = dims if isinstance(dims, int) else -1
        if op in ("max", "min"):
            ours = getattr(x, op)(dim=d, keepdim=keepdim).values
            ref = getattr(t, op)(dim=d, keepdim=keepdim).values
        else:
            ours, ref = getattr(x, op)(d), getattr(t, op)(d)
    _check(ours, ref, (x,), (t,), dtype, device)
