"""Gradient clipping: clip_grad_norm_ and clip_grad_value_, as torch.nn.utils.

Clipping by the global norm rescales all gradients together, so their direction is kept and
only the step length is bounded: the standard guard against exploding gradients in RNNs and
the first steps of transformer training.
"""

from __future__ import annotations

import math

import numpy as np

from ..kernels import foreach
from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(
    parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> Tensor:
    """Scale every gradient by min(1, max_norm / (total_norm + 1e-6)), in place.

    total_norm is the norm of all gradients seen as one vector (norm_type 2, 1, inf, ...).
    Returns total_norm (a 0-d Tensor, in the gradients' dtype), measured before clipping.
    """
    grads = _grads(parameters)
    if not grads:
        return Tensor(0.0)
    xp, dtype = grads[0].xp, grads[0].dtype
    norm_type = float(norm_type)
    arrays = [g.data for g in grads]
    if norm_type == 2.0 and foreach.supports(arrays):  # float32 CPU: one multi-tensor kernel
        total = np.sqrt(foreach.sum_squares(arrays))  # (chapter 12), summed in double
    elif math.isinf(norm_type):
        norms = xp.stack([xp.abs(g.data).max() for g in grads])
        total = norms.max()
    else:
        norms = xp.stack([(xp.abs(g.data) ** norm_type).sum() ** (1.0 / norm_type) for g in grads])
        total = (norms**norm_type).sum() ** (1.0 / norm_type)
    total = xp.asarray(total, dtype=dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"the total norm of order {norm_type} of the gradients is "
            f"{float(total)}, so they cannot be clipped; set "
            "error_if_nonfinite=False to clip anyway"
        )
    coef = xp.minimum(xp.asarray(max_norm, dtype=dtype) / (total + dtype.type(1e-6)), 1.0)
    coef = coef.astype(dtype)
    if foreach.supports(arrays):
        if coef != 1:  # (x * 1 == x: nothing to write)
            foreach.scale_(arrays, coef)
        return Tensor._wrap(total)
    for g in grads:
        g.data *= coef  # gradients are fresh arrays owned by their Parameter: safe in place
    return Tensor._wrap(total)


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        g.xp.clip(g.data, -clip_value, clip_value, out=g.data)
