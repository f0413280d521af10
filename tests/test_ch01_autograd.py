"""The autograd engine itself: graph walking, accumulation, grad modes, errors, gradcheck.

(Per-op outputs and gradients are in test_ch01_ops.py; tensors and creation in
test_ch01_tensor.py.) Compared against PyTorch where there is something to compare.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import backend
from tinytorch.autograd import Function
from tinytorch.gradcheck import GradcheckError, gradcheck

pytestmark = pytest.mark.ch01

RNG = np.random.default_rng()


def _pair(shape, device, dtype=np.float64):
    a = RNG.standard_normal(shape)
    return (
        tt.tensor(a, dtype=dtype, device=device, requires_grad=True),
        torch.tensor(a, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True),
    )


# ---- graph walking ------------------------------------------------------------------------
def test_chain_of_10000_ops(device):
    """The topological order is iterative: no recursion limit on a deep graph."""
    x, rx = _pair((3,), device)
    y, ry = x, rx
    for _ in range(10_000):
        y = y * 0.9999 + 0.0001
        ry = ry * 0.9999 + 0.0001
    y.sum().backward()
    ry.sum().backward()
    assert_close(x.grad, rx.grad, rtol=1e-9)


def test_shared_subexpression(device):
    """y = x*x + x reaches x along three paths; their gradients add: dy/dx = 2x + 1."""
    x, rx = _pair((4, 3), device)
    (x * x + x).sum().backward()
    (rx * rx + rx).sum().backward()
    assert_close(x.grad, rx.grad)
    assert_close(x.grad, 2 * to_numpy(x.detach()) + 1)


def test_diamond_graph_runs_each_backward_once(device):
    x, rx = _pair((5,), device)
    h, rh = x.exp(), rx.exp()
    (h * h.tanh() + h.sigmoid() * h).mean().backward()
    (rh * rh.tanh() + rh.sigmoid() * rh).mean().backward()
    assert_close(x.grad, rx.grad)


def test_accumulation_across_two_backward_calls(device):
    x, rx = _pair((3, 2), device)
    w, rw = _pair((2, 4), device)
    for _ in range(2):
        ((x @ w).tanh() ** 2).sum().backward()
        ((rx @ rw).tanh() ** 2).sum().backward()
    assert_close(x.grad, rx.grad)
    assert_close(w.grad, rw.grad)


def test_retain_graph_allows_a_second_backward(device):
    x, rx = _pair((3,), device)
    y, ry = (x * x).sum(), (rx * rx).sum()
    y.backward(retain_graph=True)
    y.backward()
    ry.backward(retain_graph=True)
    ry.backward()
    assert_close(x.grad, rx.grad)


def test_backward_with_explicit_gradient(device):
    x, rx = _pair((2, 3), device)
    g = RNG.standard_normal((2, 3))
    x.sigmoid().backward(tt.tensor(g, dtype=tt.float64, device=device))
    rx.sigmoid().backward(torch.tensor(g))
    assert_close(x.grad, rx.grad)


def test_only_needed_gradients_are_computed(device):
    """needs_input_grad: a constant operand gets no gradient (and backward skips its product)."""
    seen = []

    class Spy(Function):
        def forward(self, a, b):
            seen.append(self.needs_input_grad)
            return a * b

        def backward(self, g):
            return g, None

    a = tt.randn(3, device=device, requires_grad=True)
    b = tt.randn(3, device=device)
    Spy.apply(a, b).sum().backward()
    Spy.apply(b, 2.0)
    with tt.no_grad():
        Spy.apply(a, b)
    assert seen == [(True, False), (False, False), (False, False)]
    w = tt.randn(4, 5, device=device)  # constant weight: only the input's product is needed
    x = tt.randn(3, 4, device=device, requires_grad=True)
    (x @ w).sum().backward()
    assert w.grad is None and x.grad is not None
    assert_close(x.grad, np.ones((3, 5), np.float32) @ to_numpy(w).T)


def test_grads_flow_only_to_leaves_that_require_them(device):
    x = tt.randn(3, device=device, requires_grad=True)
    c = tt.randn(3, device=device)
    (x * c).sum().backward()
    assert c.grad is None
    assert x.grad is not None and x.is_leaf
    assert not x.grad.requires_grad


# ---- grad modes, detach, requires_grad_ ---------------------------------------------------
def test_no_grad_context_and_decorator(device):
    x = tt.randn(3, device=device, requires_grad=True)
    with tt.no_grad():
        y = x * 2
        assert not tt.is_grad_enabled()
    assert tt.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None

    @tt.no_grad()
    def f(t):
        return t.exp() + 1

    z = f(x)
    assert not z.requires_grad and tt.is_grad_enabled()
    assert (x * 2).requires_grad


def test_no_grad_restores_on_exception():
    with pytest.raises(ValueError, match="boom"), tt.no_grad():
        raise ValueError("boom")
    assert tt.is_grad_enabled()


def test_detach_and_requires_grad_(device):
    x = tt.randn(3, device=device, requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.is_leaf
    y = tt.randn(3, device=device)
    assert y.requires_grad_() is y and y.requires_grad
    (d * y).sum().backward()
    assert x.grad is None
    assert_close(y.grad, d)


# ---- dtype preservation --------------------------------------------------------------------
def test_float32_stays_float32_through_a_network(device):
    x = tt.randn(4, 3, device=device, requires_grad=True)
    w = tt.randn(3, 5, device=device, requires_grad=True)
    y = tt.nn.functional.gelu(x @ w * 0.5 + 1.0) ** 2
    loss = (tt.softmax(y, -1) - 0.1).abs().mean() + y.var(dim=0).sum() / 3
    assert loss.dtype == tt.float32
    loss.backward()
    assert x.grad.dtype == tt.float32 and w.grad.dtype == tt.float32


# ---- errors ---------------------------------------------------------------------------------
def test_backward_on_non_scalar_needs_gradient(device):
    y = tt.randn(2, 3, device=device, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\) \(the output of Mul\)"):
        y.backward()


def test_backward_through_freed_graph(device):
    x = tt.randn(3, device=device, requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time \(op Sum, output shape \(\)\)"):
        y.backward()
    z = x.exp() * 2  # a fresh graph works, and retain_graph keeps one alive
    z.sum().backward(retain_graph=True)


def test_backward_gradient_shape_mismatch(device):
    y = tt.randn(2, 3, device=device, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"\(3, 2\).*\(2, 3\)"):
        y.backward(tt.ones(3, 2, device=device))


def test_binary_op_shape_mismatch_names_shapes(device):
    a, b = tt.randn(2, 3, device=device), tt.randn(4, 5, device=device)
    with pytest.raises(RuntimeError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        a @ b
    with pytest.raises(RuntimeError, match=r"Add.*\(2, 3\) float32.*\(4, 5\) float32"):
        a + b
    with pytest.raises(RuntimeError, match=r"Mul.*\(2, 3\).*\(4, 5\)"):
        a * b


def test_requires_grad_on_integer_tensor_is_an_error(device):
    with pytest.raises(RuntimeError, match="floating.*int64"):
        tt.tensor([1, 2, 3], device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="floating"):
        tt.arange(3, device=device).requires_grad_()


@pytest.mark.skipif(not backend.cuda_is_available(), reason="needs a GPU for a second device")
def test_mixed_devices_is_an_error():
    a = tt.randn(2, 3, requires_grad=True)
    b = tt.randn(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match=r"Mul.*same device.*cpu.*cuda.*\(2, 3\)"):
        a * b


def test_backward_without_graph_is_an_error(device):
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tt.randn(3, device=device) * 2).sum().backward()


# ---- gradcheck itself -----------------------------------------------------------------------
class _WrongSquare(Function):
    """x**2 with a deliberately wrong backward (3x instead of 2x)."""

    def forward(self, a):
        self.a = a
        return a * a

    def backward(self, g):
        return 3 * g * self.a


class _RightSquare(_WrongSquare):
    def backward(self, g):
        return 2 * g * self.a


def test_gradcheck_passes_a_correct_backward(device):
    x = tt.randn(3, 2, dtype=tt.float64, device=device, requires_grad=True)
    assert gradcheck(lambda t: _RightSquare.apply(t), [x])


def test_gradcheck_fails_a_wrong_backward_and_names_input_and_element(device):
    x = tt.randn(3, 2, dtype=tt.float64, device=device, requires_grad=True)
    y = tt.randn(2, dtype=tt.float64, device=device, requires_grad=True)
    with pytest.raises(
        GradcheckError,
        match=r"input 1 \(shape \(2,\)\): at index \(\d,\) "
        r"analytic .* vs numerical",
    ):
        gradcheck(lambda a, b: a * 2 + _WrongSquare.apply(b), [x, y])
    assert not gradcheck(lambda a: _WrongSquare.apply(a), [x], raise_exception=False)


def test_gradcheck_needs_float64(device):
    x = tt.randn(3, device=device, requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2, [x])


def test_gradcheck_handles_non_contiguous_inputs_and_several_outputs(device):
    base = tt.randn(4, 3, dtype=tt.float64, device=device)
    x = base.T.detach().requires_grad_()  # a transposed view: perturbed element by element
    assert gradcheck(lambda t: (t.exp(), t.sum(0)), [x])


# ---- dropout and moves keep (or cut) the graph as PyTorch does -------------------------------
def test_dropout_respects_training_flag(device):
    x = tt.randn(400, 50, device=device, requires_grad=True)
    assert tt.nn.functional.dropout(x, 0.3, training=False) is x
    y = tt.nn.functional.dropout(x, 0.3, training=True)
    y.sum().backward()
    keep = to_numpy(y.detach()) != 0
    assert 0.65 < keep.mean() < 0.75
    xs = to_numpy(x.detach())
    np.testing.assert_allclose(to_numpy(y.detach())[keep], xs[keep] / 0.7, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(x.grad), keep / 0.7, rtol=1e-6)
    assert y.dtype == tt.float32
    module = tt.nn.Dropout(0.5)
    module.eval()
    assert module(x) is x
    module.train()
    assert module(x) is not x


def test_to_keeps_the_graph(device):
    x = tt.randn(3, dtype=tt.float64, device=device, requires_grad=True)
    y = x.float().to("cpu")
    assert y.dtype == tt.float32 and y.device == "cpu" and y.requires_grad
    (y * 2).sum().backward()
    assert x.grad.dtype == tt.float64 and x.grad.device == device
    assert_close(x.grad, np.full(3, 2.0))


def test_numpy_refuses_tensors_that_require_grad():
    x = tt.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert x.detach().numpy().shape == (3,)


def test_numpy_scalar_constants_do_not_upcast_float32(device):
    x = tt.randn(3, device=device, requires_grad=True)
    y = x * np.sqrt(2.0) + np.float64(1.0)
    assert y.dtype == tt.float32
    y.sum().backward()
    assert x.grad.dtype == tt.float32
