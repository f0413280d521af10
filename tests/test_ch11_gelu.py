"""Chapter 11: the fused CPU GELU kernel (kernels/gelu.cpp) and its wiring into F.gelu/nn.GELU.

Against PyTorch's exact GELU in float64: forward and backward, sizes that leave a tail after
the last whole vector, each instruction set this CPU can run (16-, 8-, 4-float vectors),
x up to about 12 in size; tolerance 1e-5 relative plus 2e-6 absolute, twice the suite's float32
atol: the erf approximation (the composed path's too) is within 5e-7 of erf, so y = x * Phi(x)
may be off by |x| * 2.5e-7 where Phi is tiny, about 1.4e-6 near x = -5 (PyTorch's float32 GELU:
4e-7). Then: F.gelu takes the kernel only where it applies (CPU, float32, exact), and bad input
is refused with a clear error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close

import tinytorch as tt
from tinytorch import kernels
from tinytorch.kernels import gelu as G

pytestmark = pytest.mark.ch11

CPU_ISAS = ("avx512", "avx2", "base")
ATOL = 2e-6  # see the module docstring


def _torch(x, g):
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.gelu(tx)
    y.backward(torch.tensor(g, dtype=torch.float64))
    return y.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize(
    "shape", [(1,), (7,), (16,), (3, 17), (12, 64, 512), (70001,), (1024, 600)]
)
def test_matches_torch_float64(isa, shape):
    if isa not in kernels.cpu_isas():
        pytest.skip(f"this CPU has no {isa} (it runs {kernels.cpu_isas()})")
    rng = np.random.default_rng()
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    x.flat[:: max(1, x.size // 5)] = 0.0  # exact zeros, and large values, in the mix
    if x.size > 2:
        x.flat[1], x.flat[2] = 9.0, -9.0
    g = rng.standard_normal(shape).astype(np.float32)
    want_y, want_dx = _torch(x, g)
    with kernels.using_cpu_isa(isa):
        y, dx = G.forward(x), G.backward(x, g)
    assert y.shape == x.shape and dx.shape == x.shape
    assert_close(y, want_y, rtol=1e-5, atol=ATOL, msg="y")
    assert_close(dx, want_dx, rtol=1e-5, atol=ATOL, msg="dx")


def _graph_ops(t):
    return type(t._ctx).__name__ if t._ctx is not None else None


def test_functional_gelu_uses_the_kernel_where_it_applies():
    rng = np.random.default_rng()
    x = rng.standard_normal((4, 33)).astype(np.float32)
    g = rng.standard_normal((4, 33)).astype(np.float32)
    t = tt.tensor(x, requires_grad=True)
    y = tt.nn.functional.gelu(t)
    assert _graph_ops(y) == "GELUFunction"
    y.backward(tt.tensor(g))
    want_y, want_dx = _torch(x, g)
    assert_close(y, want_y, rtol=1e-5, atol=1e-6)
    assert_close(t.grad, want_dx, rtol=1e-5, atol=1e-6)
    assert _graph_ops(tt.nn.GELU()(t)) == "GELUFunction"  # the module asks F.gelu
    # the composed ops elsewhere: tanh approximation, float64, the switch
    assert _graph_ops(tt.nn.functional.gelu(t, approximate="tanh")) != "GELUFunction"
    assert _graph_ops(tt.nn.functional.gelu(t.to(tt.float64))) != "GELUFunction"
    with kernels.composed():
        assert _graph_ops(tt.nn.functional.gelu(t)) != "GELUFunction"


def test_noncontiguous_input_is_copied():
    x = np.random.default_rng().standard_normal((6, 8)).astype(np.float32)
    t = tt.tensor(x, requires_grad=True)
    y = tt.nn.functional.gelu(t.transpose(0, 1))
    assert _graph_ops(y) == "GELUFunction"
    y.sum().backward()
    want_y, want_dx = _torch(x.T, np.ones((8, 6), np.float32))
    assert_close(y, want_y, rtol=1e-5, atol=1e-6)
    assert_close(t.grad, want_dx.T, rtol=1e-5, atol=1e-6)


@pytest.mark.exercise("input_checks")
def test_bad_input():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="float32"):
        G.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        G.forward(x.T)
    with pytest.raises(ValueError, match="shape"):
        G.backward(x, np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="NumPy array"):
        G.forward([1.0, 2.0])
    assert G.forward(np.zeros((0, 4), np.float32)).shape == (0, 4)
