"""Neural-network ops: softmax (masked_softmax), log_softmax, cross_entropy, embedding, dropout.

softmax and log_softmax subtract the row maximum first, so logits of magnitude 1e4 neither
overflow nor lose the answer. cross_entropy is fused (log_softmax + pick + mean in one
Function) because its gradient is simply softmax(x) - onehot(target).
"""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from .shape import _dim, scatter_add


def _log_softmax(x, axis):
    xp = backend.xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


class Softmax(Function):
    """exp(x - max) / sum(exp(x - max)) along `axis`.

    A row (along `axis`) that is all -inf gives NaN, as torch.softmax does (0/0), unless
    `zero_masked_rows`: then it gives 0, and so does its gradient. That is what attention needs
    for a query whose every key is masked (PyTorch's scaled_dot_product_attention returns 0
    there): shifting by a finite maximum keeps exp() in range, and a zero row sum can only mean
    the row had no allowed entry.
    """

    def forward(self, x, axis=-1, zero_masked_rows=False):
        xp = backend.xp_of(x)
        m = x.max(axis=axis, keepdims=True)
        if zero_masked_rows:
            m = xp.where(xp.isneginf(m), 0, m)  # an all -inf row: any finite shift works
        e = xp.asarray(x - m)  # (0-d input: a scalar otherwise)
        xp.exp(e, out=e)  # in place: at large sizes memory traffic, not arithmetic, is the cost
        s = e.sum(axis=axis, keepdims=True)
        e /= xp.where(s == 0, 1, s) if zero_masked_rows else s
        self.out, self.axis = e, axis
        return e

    def backward(self, g):
        # y * (g - sum(g * y)), computed in the memory of the temporary g * y (0 where y is)
        y, xp = self.out, backend.xp_of(g)
        # BEGIN EXERCISE ch01: softmax_backward - y * (g - sum(g * y)) along self.axis
        gy = xp.asarray(g * y)
        s = gy.sum(axis=self.axis, keepdims=True)
        xp.subtract(g, s, out=gy)
        gy *= y
        return gy
        # END EXERCISE


class LogSoftmax(Function):
    def forward(self, x, axis=-1):
        self.out, self.axis = _log_softmax(x, axis), axis
        return self.out

    def backward(self, g):
        xp = backend.xp_of(g)
        e = xp.asarray(xp.exp(self.out))  # softmax
        e *= g.sum(axis=self.axis, keepdims=True)
        return xp.subtract(g, e, out=e)


class CrossEntropy(Function):
    """Mean/sum/none of -log softmax(x)[target] over rows of x (N, C), with ignore_index and
    label smoothing (the target distribution is (1-eps) onehot + eps/C, as in PyTorch)."""

    def forward(self, x, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        xp = backend.xp_of(x)
        n, c = x.shape
        logp = _log_softmax(x, 1)
        keep = target != ignore_index
        safe = xp.where(keep, target, 0)
        rows = xp.arange(n)
        loss = -logp[rows, safe]
        if label_smoothing:
            loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(axis=1)
        loss = loss * keep
        self.logp, self.safe, self.keep, self.eps = logp, safe, keep, label_smoothing
        self.reduction = reduction
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        self.count = keep.sum().astype(x.dtype)  # keeps float32 float32 (a 0-d array on GPU)
        return loss.sum() / self.count  # nan when every target is ignored, as PyTorch

    def backward(self, g):
        xp = backend.xp_of(g)
        n, c = self.logp.shape
        grad = xp.exp(self.logp)
        grad[xp.arange(n), self.safe] -= 1 - self.eps
        if self.eps:
            grad -= self.eps / c
        w = self.keep.astype(grad.dtype)
        if self.reduction == "none":
            w = w * g
        elif self.reduction == "sum":
            w = w * g
        else:
            w = w * (g / self.count)
        grad *= w[:, None]
        return grad, None


class Embedding(Function):
    """out[...] = weight[idx[...]]; the backward adds rows back (repeated ids accumulate)."""

    def forward(self, weight, idx, padding_idx=None):
        self.idx, self.shape, self.padding_idx = idx, weight.shape, padding_idx
        return weight[idx]

    def backward(self, g):
        xp = backend.xp_of(g)
        grad = xp.zeros(self.shape, dtype=g.dtype)
        scatter_add(xp, grad, self.idx.reshape(-1), g.reshape(-1, self.shape[1]))
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        return grad, None


class Dropout(Function):
    def forward(self, x, p=0.5, device="cpu"):
        keep = backend.rng(device).random(x.shape, dtype="float32") >= p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - p))
        return x * self.mask

    def backward(self, g):
        return g * self.mask


def softmax(input, dim: int = -1):
    """torch.softmax: probabilities along `dim` (an all -inf row gives NaN, as in PyTorch)."""
    return Softmax.apply(input, axis=_dim(dim, max(input.ndim, 1), "softmax"))


def masked_softmax(input, dim: int = -1):
    """softmax, except that a row that is all -inf (every entry masked) gives 0, not NaN, and a
    zero gradient: attention's weights for a query with no allowed key (see Softmax)."""
    axis = _dim(dim, max(input.ndim, 1), "masked_softmax")
    return Softmax.apply(input, axis=axis, zero_masked_rows=True)


def log_softmax(input, dim: int = -1):
    return LogSoftmax.apply(input, axis=_dim(dim, max(input.ndim, 1), "log_softmax"))


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
):
    """torch.nn.functional.cross_entropy for class-index targets.

    input: (N, C) logits, (C,) for one example, or (N, C, d1, ...) with target (N, d1, ...).
    target: int64 class indices; entries equal to ignore_index contribute nothing.
    """
    if weight is not None:
        raise NotImplementedError("cross_entropy: per-class weight is not supported yet")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(
            f"cross_entropy: target must be an integer (int64) tensor of class indices, got {got}"
        )
    from .shape import permute, reshape

    x, t = input, target
    if x.ndim == 1:
        x, t = reshape(x, (1, -1)), reshape(t, (1,))
    elif x.ndim > 2:  # (N, C, d1, ...) -> (N * d1 * ..., C)
        c = x.shape[1]
        x = reshape(permute(x, (0, *range(2, x.ndim), 1)), (-1, c))
        t = reshape(t, (-1,))
    if t.shape != (x.shape[0],):
        raise ValueError(
            f"cross_entropy: target shape {tuple(target.shape)} does not match "
            f"input shape {tuple(input.shape)} (expected "
            f"{(input.shape[0],) + tuple(input.shape[2:]) if input.ndim > 1 else ()})"
        )
    c = x.shape[1]
    tgt = t.data
    valid = (tgt == ignore_index) | ((tgt >= 0) & (tgt < c))
    if not bool(valid.all()):
        bad = int(tgt[~valid].reshape(-1)[0])
        raise IndexError(
            f"cross_entropy: target {bad} is out of range for {c} classes "
            f"(expected 0..{c - 1} or ignore_index={ignore_index})"
        )
    out = CrossEntropy.apply(
        x, tgt, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    if reduction == "none":
        out = reshape(out, target.shape)
    return out


def embedding(input, weight, padding_idx=None):
    """Rows of `weight` (V, C) picked by the int64 ids in `input` (any shape) -> (*, C)."""
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        raise TypeError("embedding: input must be an integer tensor of ids")
    ids = input.data
    v = weight.shape[0]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= v):
        raise IndexError(
            f"embedding: ids must be in 0..{v - 1}; got min {int(ids.min())}, max {int(ids.max())}"
        )
    return Embedding.apply(weight, ids, padding_idx=padding_idx)


def dropout(input, p: float = 0.5, training: bool = True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (only in training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return Dropout.apply(input, p=p, device=input.device)
