"""tinytorch.nn.functional: torch.nn.functional's names over tinytorch ops.

Ops with their own gradient live in tinytorch.ops; the compositions here (linear, layer_norm,
the losses) are written with differentiable tensor ops, so autograd derives their backward.
"""

from __future__ import annotations

from .. import ops
from ..ops import (  # noqa: F401 - re-exported under torch.nn.functional's names
    cross_entropy, dropout, embedding, gelu, log_softmax, relu, sigmoid, softmax, tanh,
)
from ..tensor import Tensor


def linear(input, weight, bias=None):
    """input (*, in) @ weight (out, in)^T + bias (out,) -> (*, out)."""
    if input.shape[-1] != weight.shape[-1]:
        raise RuntimeError(f"linear: input has {input.shape[-1]} features (shape "
                           f"{tuple(input.shape)}) but weight expects {weight.shape[-1]} "
                           f"(weight shape {tuple(weight.shape)})")
    out = ops.matmul(input, ops.transpose(weight, 0, 1))
    return out if bias is None else out + bias


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalize over the trailing `normalized_shape` dims: (x - mean) / sqrt(var + eps),
    biased variance, then scale by weight and shift by bias (each of normalized_shape)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(shape):]) != shape:
        raise RuntimeError(f"layer_norm: normalized_shape {shape} does not match the last dims "
                           f"of the input's shape {tuple(input.shape)}")
    from .. import kernels_dispatch

    fused = kernels_dispatch.layer_norm(input, shape, weight, bias, eps)
    if fused is not None:
        return fused
    dims = tuple(range(-len(shape), 0))
    mean = ops.mean(input, dims, keepdim=True)
    centered = input - mean
    var = ops.mean(centered * centered, dims, keepdim=True)
    out = centered * (var + eps) ** -0.5
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def nll_loss(input, target, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log likelihood of log-probabilities `input` (N, C) at class indices `target`."""
    n = input.shape[0]
    keep = target.data != ignore_index
    safe = input.xp.where(keep, target.data, 0)
    picked = ops.getitem(input, (input.xp.arange(n), safe)) * Tensor._wrap(
        keep.astype(input.dtype))
    loss = -picked
    if reduction == "none":
        return loss
    if reduction == "sum":
        return ops.sum(loss)
    return ops.sum(loss) / float(keep.sum())


def mse_loss(input, target, reduction: str = "mean"):
    d = input - target
    sq = d * d
    return sq if reduction == "none" else (ops.sum(sq) if reduction == "sum" else ops.mean(sq))


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean", pos_weight=None):
    """Stable BCE on logits: max(x, 0) - x*t + log(1 + exp(-|x|))."""
    if pos_weight is not None:
        raise NotImplementedError("binary_cross_entropy_with_logits: pos_weight is not supported")
    x = input
    loss = ops.relu(x) - x * target + ops.log(1 + ops.exp(-ops.abs(x)))
    if reduction == "none":
        return loss
    return ops.sum(loss) if reduction == "sum" else ops.mean(loss)
