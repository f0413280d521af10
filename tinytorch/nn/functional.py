"""tinytorch.nn.functional: torch.nn.functional's names over tinytorch ops.

Ops with their own gradient live in tinytorch.ops (softmax, log_softmax, the fused
CrossEntropy Function, embedding, dropout); the compositions here (linear, layer_norm, the
other losses) are written with differentiable tensor ops, so autograd derives their backward.
cross_entropy is defined here only: its checks and reshaping, then the fused op.

Shapes: N is the batch, C the number of classes, (d1, ...) optional extra dims, as in PyTorch.
"""

from __future__ import annotations

import warnings

from .. import ops
from ..kernels import gelu as fused_gelu
from ..kernels import layernorm as fused_layernorm
from ..kernels import softmax as fused_softmax
from ..ops import (  # noqa: F401 - re-exported under torch.nn.functional's names
    dropout,
    embedding,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from ..ops.nn import CrossEntropy
from ..tensor import Tensor


def linear(input, weight, bias=None):
    """input (*, in) @ weight (out, in)^T + bias (out,) -> (*, out)."""
    if input.shape[-1] != weight.shape[-1]:
        raise RuntimeError(
            f"linear: input has {input.shape[-1]} features (shape "
            f"{tuple(input.shape)}) but weight expects {weight.shape[-1]} "
            f"(weight shape {tuple(weight.shape)})"
        )
    # (B, T, in) @ (in, out) runs as one (B*T, in) product: matmul folds the leading dims of
    # an operand against a 2-D weight, in the forward and in both products of the backward
    x = input
    # BEGIN EXERCISE ch03: linear - out = x @ weight^T, plus bias when there is one (x is (*, in))
    out = ops.matmul(x, ops.transpose(weight, 0, 1))
    if bias is not None:
        out = out + bias
    # END EXERCISE
    return out


def gelu(input, approximate: str = "none"):
    """x * Phi(x), Phi the standard normal CDF (or PyTorch's tanh approximation). On the CPU,
    float32 and exact, the fused kernel of chapter 11 takes the call (tinytorch.kernels)."""
    fused = fused_gelu.dispatch(input, approximate)
    return fused if fused is not None else ops.gelu(input, approximate)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalize over the trailing `normalized_shape` dims: (x - mean) / sqrt(var + eps),
    biased variance, then scale by weight and shift by bias (each of normalized_shape)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[-len(shape) :]) != shape:
        raise RuntimeError(
            f"layer_norm: normalized_shape {shape} does not match the last dims "
            f"of the input's shape {tuple(input.shape)}"
        )
    fused = fused_layernorm.dispatch(input, shape, weight, bias, eps)
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


def _check_reduction(name, reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _rows(input, target, ignore_index, name):
    """(N, C) / (C,) / (N, C, d1, ...) input and class-index target -> (M, C), (M,), with
    every target checked: a class index in 0..C-1, or ignore_index."""
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(
            f"{name}: target must be an integer (int64) tensor of class indices, got {got}"
        )
    x, t = input, target
    if x.ndim == 1:
        x, t = ops.reshape(x, (1, -1)), ops.reshape(t, (1,))
    elif x.ndim > 2:  # (N, C, d1, ...) -> (N * d1 * ..., C)
        x = ops.reshape(ops.permute(x, (0, *range(2, x.ndim), 1)), (-1, x.shape[1]))
        t = ops.reshape(t, (-1,))
    expected = (input.shape[0],) + tuple(input.shape[2:]) if input.ndim > 1 else ()
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match input "
            f"shape {tuple(input.shape)} (expected target shape {expected})"
        )
    c, tgt = x.shape[1], t.data
    bad = (tgt != ignore_index) & ((tgt < 0) | (tgt >= c))
    if bool(bad.any()):
        raise IndexError(
            f"{name}: target {int(tgt[bad][0])} is out of range for {c} classes "
            f"(expected 0..{c - 1} or ignore_index={ignore_index})"
        )
    return x, t


def nll_loss(input, target, weight=None, ignore_index: int = -100, reduction: str = "mean"):
    """Negative log likelihood: -input[n, target[n]] * weight[target[n]], from
    log-probabilities `input` (N, C), (C,) or (N, C, d1, ...) and int64 `target`.
    'mean' divides by the summed weights of the targets that are not ignore_index."""
    _check_reduction("nll_loss", reduction)
    x, t = _rows(input, target, ignore_index, "nll_loss")
    xp, (m, c) = x.xp, x.shape
    tgt = t.data
    keep = tgt != ignore_index
    safe = xp.where(keep, tgt, 0)
    w = keep.astype(x.dtype)
    wc = _class_weight(weight, input, c, "nll_loss")
    if wc is not None:
        w = w * wc.astype(x.dtype)[safe]
    loss = -ops.getitem(x, (xp.arange(m), safe)) * Tensor._wrap(w)
    if reduction == "none":
        return ops.reshape(loss, target.shape)
    if reduction == "sum":
        return ops.sum(loss)
    return ops.sum(loss) / Tensor._wrap(xp.asarray(w.sum(), dtype=x.dtype))  # 0/0: nan, as torch


def _class_weight(weight, input, c, name):
    """The raw (C,) array of class weights, or None; weights are constants (no gradient)."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or tuple(weight.shape) != (c,):
        got = tuple(weight.shape) if hasattr(weight, "shape") else type(weight).__name__
        raise ValueError(
            f"{name}: weight must be a tensor of shape ({c},), one per class, got {got}"
        )
    if weight.device != input.device:
        raise RuntimeError(
            f"{name}: weight is on {weight.device} but the input is on {input.device}; "
            "expected both on the same device"
        )
    return weight.data


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
):
    """torch.nn.functional.cross_entropy: log_softmax over dim 1 (C), then the negative log
    likelihood of the targets.

    input: (N, C) logits, (C,) for one example, or (N, C, d1, ...).
    target: int64 class indices of shape (N,), () or (N, d1, ...) (entries equal to
    ignore_index contribute nothing), or class probabilities of the input's shape.
    weight: (C,) per-class weights: a row's loss is scaled by weight[target], and 'mean'
    divides by the summed weights of the rows not ignored (PyTorch's semantics, with label
    smoothing too). Index targets go through the fused op (its gradient is softmax - onehot).
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    cdim = 1 if input.ndim > 1 else 0
    w = _class_weight(weight, input, input.shape[cdim], "cross_entropy")
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        return _soft_cross_entropy(input, target, weight, reduction, label_smoothing, cdim)
    x, t = _rows(input, target, ignore_index, "cross_entropy")
    # float32 on the CPU from MIN_SIZE_CROSS_ENTROPY elements up: the fused kernel of chapter 12
    # (log_softmax never stored)
    out = fused_softmax.dispatch_cross_entropy(
        x, t.data, w, ignore_index, reduction, label_smoothing
    )
    if out is not None:
        return ops.reshape(out, target.shape) if reduction == "none" else out
    out = CrossEntropy.apply(
        x,
        t.data,
        weight=w,
        ignore_index=ignore_index,
        reduction=reduction,
        eps=label_smoothing,
    )
    return ops.reshape(out, target.shape) if reduction == "none" else out


def _soft_cross_entropy(input, target, weight, reduction, label_smoothing, cdim):
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"cross_entropy: probability targets must have the input's shape "
            f"{tuple(input.shape)}, got {tuple(target.shape)}"
        )
    c = input.shape[cdim]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / c
    logp = log_softmax(input, cdim)
    if weight is not None:
        shape = [1] * input.ndim
        shape[cdim] = c
        logp = logp * ops.reshape(weight, tuple(shape))
    loss = -ops.sum(logp * target, cdim)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return ops.sum(loss)
    return ops.mean(loss)  # over the N * d1 * ... positions


def mse_loss(input, target, reduction: str = "mean"):
    """Mean (or sum, or none) of (input - target)^2, elementwise."""
    _check_reduction("mse_loss", reduction)
    if tuple(input.shape) != tuple(getattr(target, "shape", ())):
        warnings.warn(
            f"mse_loss: target size {tuple(getattr(target, 'shape', ()))} differs "
            f"from input size {tuple(input.shape)}; they will be broadcast, which is "
            "likely a bug",
            UserWarning,
            stacklevel=2,
        )
    d = input - target
    sq = d * d
    return sq if reduction == "none" else (ops.sum(sq) if reduction == "sum" else ops.mean(sq))


def binary_cross_entropy_with_logits(
    input, target, weight=None, reduction: str = "mean", pos_weight=None
):
    """BCE on logits x with targets t in [0, 1], computed stably:
    (1 - t) x + lw (log(1 + exp(-|x|)) + max(-x, 0)), lw = 1 + (pos_weight - 1) t."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"binary_cross_entropy_with_logits: target shape "
            f"{tuple(target.shape)} must equal input shape {tuple(input.shape)}"
        )
    x = input
    # |x| as relu(x) + relu(-x): the same value and gradient (0 at 0) as abs
    softplus_neg = ops.log(1 + ops.exp(-(ops.relu(x) + ops.relu(-x)))) + ops.relu(-x)
    if pos_weight is not None:
        softplus_neg = softplus_neg * ((pos_weight - 1) * target + 1)
    loss = (1 - target) * x + softplus_neg
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    return ops.sum(loss) if reduction == "sum" else ops.mean(loss)


def one_hot(tensor, num_classes: int = -1):
    """int64 ids (*) -> int64 one-hot vectors (*, num_classes); num_classes=-1 means max+1."""
    if not isinstance(tensor, Tensor) or tensor.dtype.kind not in "iu":
        raise TypeError("one_hot: expects an integer (int64) tensor of class indices")
    ids = tensor.data
    n = int(ids.max()) + 1 if num_classes == -1 else num_classes
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise RuntimeError(
            f"one_hot: class values must be in 0..{n - 1}, got min "
            f"{int(ids.min())}, max {int(ids.max())}"
        )
    return Tensor._wrap((ids[..., None] == tensor.xp.arange(n)).astype("int64"))


from .functional_attention import scaled_dot_product_attention  # noqa: E402,F401 - chapter 06
