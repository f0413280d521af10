"""gradcheck: autograd's gradients against central finite differences, in float64.

The first of the two oracles every differentiable op is tested with (the second is PyTorch):

    from tinytorch.gradcheck import gradcheck
    x = tinytorch.randn(3, 4, dtype=tinytorch.float64, requires_grad=True)
    gradcheck(lambda t: t.tanh().sum(1), [x])      # True, or GradcheckError naming the element
"""

from __future__ import annotations

import numpy as np

from .autograd import no_grad
from .tensor import Tensor

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    pass


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Compare autograd's gradients with central finite differences, in float64.

    `fn(*inputs)` returns a Tensor (or a tuple of Tensors). To check all outputs at once we
    differentiate L = sum_k <out_k, r_k> for fixed random r_k: its gradient is every output's
    vector-Jacobian product with r, so one backward and two forwards per input element suffice.
    Inputs that require grad must be float64. On failure the message names the input and its
    worst element, with the analytic and numerical values.
    """
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs")
    gen = np.random.default_rng()

    def outputs():
        out = fn(*inputs)
        return out if isinstance(out, tuple | list) else (out,)

    outs = [o for o in outputs() if isinstance(o, Tensor)]
    weights = [o.xp.asarray(gen.standard_normal(o.shape)) for o in outs]

    def scalar(outs_):
        return sum(float((o.data * w).sum()) for o, w in zip(outs_, weights))

    for i in checked:
        inputs[i].grad = None
    loss = None
    for o, w in zip(outs, weights):
        if o.requires_grad:
            term = (o * Tensor._wrap(w)).sum()
            loss = term if loss is None else loss + term
    if loss is not None:
        loss.backward()

    for i in checked:
        x = inputs[i]
        analytic = x.grad.numpy() if x.grad is not None else np.zeros(x.shape)
        numeric = np.zeros(x.shape)
        arr = x.data  # perturbed in place, element by element (works for any memory layout)
        for j in np.ndindex(*x.shape):
            orig = float(arr[j])
            arr[j] = orig + eps
            with no_grad():
                plus = scalar(outputs())
            arr[j] = orig - eps
            with no_grad():
                minus = scalar(outputs())
            arr[j] = orig
            numeric[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if (err > 0).any() or not np.isfinite(analytic).all():
            k = tuple(int(v) for v in np.unravel_index(int(np.argmax(err)), x.shape))
            msg = (
                f"gradcheck failed for input {i} (shape {tuple(x.shape)}): at index {k} "
                f"analytic {analytic[k]:.10g} vs numerical {numeric[k]:.10g} "
                f"(atol={atol}, rtol={rtol})"
            )
            if raise_exception:
                raise GradcheckError(msg)
            return False
    return True
