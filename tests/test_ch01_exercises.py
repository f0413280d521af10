"""Chapter 01's exercises, one group of tests each, in the lesson's order.

Each group tests its piece as directly as it can: a Function's `backward` is called on raw
arrays (no graph, no other exercise involved), the engine's pieces on small graphs built by
hand. `python -m tinytorch.course test 1 --exercise NAME` runs one group. Every expected value
comes from PyTorch or from NumPy written out by hand.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import autograd
from tinytorch.autograd import Function, unbroadcast
from tinytorch.ops import activations, elementwise, linalg, reduce, shape
from tinytorch.ops import nn as nn_ops

pytestmark = pytest.mark.ch01

RNG = np.random.default_rng()


def _backward(cls, *inputs, g=None, needs=None, **kw):
    """Run one Function on raw float64 arrays: (output, gradients), without any graph."""
    fn = cls()
    fn.needs_input_grad = needs or tuple(isinstance(x, np.ndarray) for x in inputs)
    out = fn.forward(*inputs, **kw)
    g = RNG.standard_normal(np.shape(out)) if g is None else g
    grads = fn.backward(g)
    return out, g, grads if isinstance(grads, tuple) else (grads,)


def _torch_grads(fn, *inputs, g):
    """PyTorch's vector-Jacobian product of fn at inputs (float64 arrays) with g."""
    ts = [torch.tensor(x, requires_grad=True) for x in inputs]
    out = fn(*ts)
    return torch.autograd.grad(out, ts, torch.tensor(g))


# ---- 1. unbroadcast -------------------------------------------------------------------------
@pytest.mark.exercise("unbroadcast")
@pytest.mark.parametrize(
    "grad_shape,shape",
    [
        ((2, 3, 4), (3, 4)),  # a prepended dim
        ((2, 3, 4), (4,)),  # two prepended dims
        ((2, 3, 4), (3, 1)),  # prepended, and a stretched size-1 dim
        ((2, 3, 4), (2, 1, 4)),  # a stretched dim in the middle
        ((2, 3, 4), (1, 1, 1)),
        ((2, 3, 4), ()),  # a scalar operand: everything summed
        ((5, 1), (1, 1)),  # a size-1 dim that was not stretched stays
    ],
)
def test_unbroadcast_sums_what_broadcasting_added(grad_shape, shape):
    g = RNG.standard_normal(grad_shape)
    ref = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    (ref + torch.zeros(grad_shape, dtype=torch.float64)).backward(torch.tensor(g))
    out = unbroadcast(g, shape)
    assert out.shape == shape
    assert_close(out, ref.grad)


@pytest.mark.exercise("unbroadcast")
def test_unbroadcast_keeps_a_matching_gradient():
    g = RNG.standard_normal((3, 4))
    assert unbroadcast(g, (3, 4)) is g


# ---- 2. elementwise_backward ----------------------------------------------------------------
@pytest.mark.exercise("elementwise_backward")
@pytest.mark.parametrize("cls,fn", [(elementwise.Mul, torch.mul), (elementwise.Div, torch.div)])
def test_mul_and_div_backward_with_broadcasting(cls, fn):
    a, b = RNG.standard_normal((4, 3)), RNG.uniform(0.5, 2.0, (3,))  # b broadcasts over rows
    out, g, (ga, gb) = _backward(cls, a, b)
    ra, rb = _torch_grads(fn, a, b, g=g)
    assert ga.shape == a.shape and gb.shape == b.shape
    assert_close(ga, ra)
    assert_close(gb, rb)


@pytest.mark.exercise("elementwise_backward")
@pytest.mark.parametrize("cls", [elementwise.Mul, elementwise.Div])
def test_mul_and_div_skip_inputs_that_need_no_gradient(cls):
    a, b = RNG.standard_normal((2, 3)), RNG.uniform(0.5, 2.0, (2, 3))
    _, g, (ga, gb) = _backward(cls, a, b, needs=(True, False))
    assert gb is None
    assert_close(ga, g * b if cls is elementwise.Mul else g / b)
    _, g, (ga, gb) = _backward(cls, a, 2.0, needs=(True, False))  # a Python scalar operand
    assert gb is None and ga.shape == a.shape


@pytest.mark.exercise("elementwise_backward")
@pytest.mark.parametrize("cls,fn", [(elementwise.Exp, torch.exp), (elementwise.Log, torch.log)])
def test_exp_and_log_backward(cls, fn):
    a = RNG.uniform(0.5, 2.0, (3, 4))
    _, g, (ga,) = _backward(cls, a)
    assert_close(ga, _torch_grads(fn, a, g=g)[0])


# ---- 3. activation_backward -----------------------------------------------------------------
@pytest.mark.exercise("activation_backward")
@pytest.mark.parametrize(
    "cls,fn",
    [
        (activations.Tanh, torch.tanh),
        (activations.Sigmoid, torch.sigmoid),
        (activations.ReLU, torch.relu),
    ],
    ids=["tanh", "sigmoid", "relu"],
)
def test_activation_backward(cls, fn):
    a = RNG.standard_normal((5, 4))
    a[np.abs(a) < 1e-3] = 0.5  # (relu has a kink at 0)
    _, g, (ga,) = _backward(cls, a)
    assert_close(ga, _torch_grads(fn, a, g=g)[0])


# ---- 4. reduction_backward ------------------------------------------------------------------
@pytest.mark.exercise("reduction_backward")
@pytest.mark.parametrize(
    "axes,keepdim", [((0, 1, 2), False), ((1,), False), ((0, 2), True), ((2,), True)]
)
@pytest.mark.parametrize("cls,fn", [(reduce.Sum, torch.sum), (reduce.Mean, torch.mean)])
def test_sum_and_mean_backward(cls, fn, axes, keepdim):
    a = RNG.standard_normal((2, 3, 4))
    _, g, (ga,) = _backward(cls, a, axes=axes, keepdim=keepdim)
    ref = _torch_grads(lambda t: fn(t, dim=axes, keepdim=keepdim), a, g=g)[0]
    assert ga.shape == a.shape
    assert_close(ga, ref)


# ---- 5. shape_backward ----------------------------------------------------------------------
@pytest.mark.exercise("shape_backward")
def test_reshape_backward():
    a = RNG.standard_normal((2, 3, 4))
    _, g, (ga,) = _backward(shape.Reshape, a, shape=(6, 4))
    assert_close(ga, g.reshape(2, 3, 4))


@pytest.mark.exercise("shape_backward")
@pytest.mark.parametrize("dims", [(1, 0, 2), (2, 0, 1), (1, 2, 0)])
def test_permute_backward_uses_the_inverse_permutation(dims):
    a = RNG.standard_normal((2, 3, 4))
    _, g, (ga,) = _backward(shape.Permute, a, dims=dims)
    assert_close(ga, _torch_grads(lambda t: t.permute(dims), a, g=g)[0])


@pytest.mark.exercise("shape_backward")
def test_cat_backward_gives_each_input_its_slice():
    xs = [RNG.standard_normal((2, n)) for n in (1, 3, 2)]
    _, g, grads = _backward(shape.Cat, *xs, axis=1)
    assert [x.shape for x in grads] == [(2, 1), (2, 3), (2, 2)]
    for ours, ref in zip(grads, _torch_grads(lambda *t: torch.cat(t, 1), *xs, g=g)):
        assert_close(ours, ref)


# ---- 6. matmul_backward ---------------------------------------------------------------------
@pytest.mark.exercise("matmul_backward")
@pytest.mark.parametrize(
    "sa,sb",
    [
        ((3, 4), (4, 5)),
        ((4,), (4, 5)),  # a row vector on the left
        ((3, 4), (4,)),  # a column vector on the right
        ((4,), (4,)),  # a dot product: a 0-d result
        ((2, 3, 4), (4, 5)),  # one weight for a batch
        ((2, 1, 3, 4), (5, 4, 2)),  # batch dims that broadcast on both sides
    ],
)
def test_matmul_backward(sa, sb):
    a, b = RNG.standard_normal(sa), RNG.standard_normal(sb)
    _, g, (ga, gb) = _backward(linalg.MatMul, a, b)
    ra, rb = _torch_grads(torch.matmul, a, b, g=g)
    assert ga.shape == a.shape and gb.shape == b.shape
    assert_close(ga, ra)
    assert_close(gb, rb)


@pytest.mark.exercise("matmul_backward")
def test_matmul_backward_skips_a_constant_operand():
    a, b = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 5))
    _, g, (ga, gb) = _backward(linalg.MatMul, a, b, needs=(True, False))
    assert gb is None
    assert_close(ga, g @ b.T)


# ---- 7. softmax_backward --------------------------------------------------------------------
@pytest.mark.exercise("softmax_backward")
@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_backward(axis):
    a = RNG.standard_normal((4, 5))
    _, g, (ga,) = _backward(nn_ops.Softmax, a, axis=axis)
    assert_close(ga, _torch_grads(lambda t: torch.softmax(t, axis), a, g=g)[0])


# ---- 8. record_graph ------------------------------------------------------------------------
@pytest.mark.exercise("record_graph")
def test_apply_links_the_output_to_its_function():
    x = tt.randn(3, requires_grad=True)
    c = tt.randn(3)
    y = x * c
    assert y.requires_grad and not y.is_leaf
    assert isinstance(y.grad_fn, elementwise.Mul)
    assert y.grad_fn.inputs[0] is x and y.grad_fn.inputs[1] is c
    z = y * 2.0
    assert z.grad_fn.inputs == (y, 2.0)  # constants are kept as they were passed


@pytest.mark.exercise("record_graph")
def test_apply_records_nothing_without_a_tensor_that_requires_grad():
    x, c = tt.randn(3, requires_grad=True), tt.randn(3)
    for y in (c * c, c + 1.0):
        assert not y.requires_grad and y.grad_fn is None
    with tt.no_grad():
        y = x * x
    assert not y.requires_grad and y.grad_fn is None


# ---- 9. topological_order -------------------------------------------------------------------
def _check_order(order, root):
    pos = {id(t): i for i, t in enumerate(order)}
    assert len(pos) == len(order), "a tensor appears twice"
    assert order[-1] is root
    for t in order:
        for p in autograd._parents(t):
            assert id(p) in pos, "a parent is missing"
            assert pos[id(p)] < pos[id(t)], "a tensor comes before one of its parents"


@pytest.mark.exercise("topological_order")
def test_topological_order_of_a_diamond():
    x = tt.randn(3, requires_grad=True)
    c = tt.randn(3)  # a constant: not part of the order
    h = x.exp()
    a, b = h * c, h.tanh()
    bh = b * h
    s = a + bh
    y = s.sum()
    order = autograd._topological_order(y)
    _check_order(order, y)
    assert {id(t) for t in order} == {id(t) for t in (x, h, a, b, bh, s, y)}
    assert len(order) == 7  # c is a constant: not part of the order
    assert sum(t is x for t in order) == 1 and sum(t is h for t in order) == 1


@pytest.mark.exercise("topological_order")
def test_topological_order_is_iterative():
    x = tt.randn(2, requires_grad=True)
    y = x
    for _ in range(5_000):  # far past Python's recursion limit of 1,000
        y = y * 1.0
    order = autograd._topological_order(y)
    assert len(order) == 5_001 and order[0] is x and order[-1] is y


@pytest.mark.exercise("topological_order")
def test_second_backward_through_a_freed_graph_is_an_error():
    x = tt.randn(3, requires_grad=True)
    y = (x * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time \(op Sum, output shape \(\)\)"):
        y.backward()


# ---- 10. chain_rule -------------------------------------------------------------------------
@pytest.mark.exercise("chain_rule")
def test_chain_rule_sums_gradients_over_paths_and_runs_each_backward_once():
    calls = []

    class Square(Function):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, g):
            calls.append(1)
            return 2 * g * self.a

    a = RNG.standard_normal(4)
    x = tt.tensor(a, dtype=tt.float64, requires_grad=True)
    h = Square.apply(x)  # used three times below
    (h * h + h.exp() + h).sum().backward()
    assert len(calls) == 1
    ra = torch.tensor(a, requires_grad=True)
    rh = ra * ra
    (rh * rh + rh.exp() + rh).sum().backward()
    assert_close(x.grad, ra.grad)


@pytest.mark.exercise("chain_rule")
def test_chain_rule_with_a_gradient_and_constants():
    a, w = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2))
    x = tt.tensor(a, dtype=tt.float64, requires_grad=True)
    y = (x @ tt.tensor(w, dtype=tt.float64)).tanh() * 3.0
    g = RNG.standard_normal((3, 2))
    y.backward(tt.tensor(g, dtype=tt.float64))
    ra = torch.tensor(a, requires_grad=True)
    ((ra @ torch.tensor(w)).tanh() * 3.0).backward(torch.tensor(g))
    assert_close(x.grad, ra.grad)


# ---- 11. accumulate_grad --------------------------------------------------------------------
@pytest.mark.exercise("accumulate_grad")
def test_leaf_gradients_accumulate_across_backward_calls():
    x = tt.randn(3, dtype=tt.float64, requires_grad=True)
    assert x.grad is None
    (x * 2.0).sum().backward()
    assert_close(x.grad, np.full(3, 2.0))
    (x * x).sum().backward()
    assert_close(x.grad, 2.0 + 2 * to_numpy(x.detach()))
    x.backward(tt.ones(3, dtype=tt.float64))  # a leaf as the root
    assert_close(x.grad, 3.0 + 2 * to_numpy(x.detach()))


@pytest.mark.exercise("accumulate_grad")
def test_leaf_gradient_arrays_are_never_shared():
    """Add hands the same array to both inputs: each leaf must get its own (in-place updates
    of one .grad must not change the other); an array nobody else holds is kept as it is."""
    a, b = tt.randn(3, requires_grad=True), tt.randn(3, requires_grad=True)
    (a + b).backward(tt.ones(3))
    assert a.grad.data is not b.grad.data
    a.grad.data += 1
    assert_close(b.grad, np.ones(3, np.float32))

    made = []

    class Fresh(Function):
        def forward(self, t):
            return t * 2

        def backward(self, g):
            out = g * 2
            made.append(weakref.ref(out))
            return out

    x = tt.randn(3, requires_grad=True)
    Fresh.apply(x).sum().backward()
    assert x.grad.data is made[0](), "an unshared gradient array was copied"
