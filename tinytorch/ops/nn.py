"""Neural-network ops: softmax (masked_softmax), log_softmax, the fused CrossEntropy, embedding,
dropout.

softmax and log_softmax subtract the row maximum first, so logits of magnitude 1e4 neither
overflow nor lose the answer. CrossEntropy is fused (log_softmax + pick + weight + reduce in
one Function) because its gradient is simply softmax(x) - onehot(target); the function users
call, with its checks, is nn.functional.cross_entropy.
"""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..kernels import softmax as fused
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
    """-log softmax(x)[target] per row of x (N, C), fused: log_softmax, pick, weight, reduce.

    PyTorch's semantics for class-index targets (the checks, and the reshaping of (C,) and
    (N, C, d1, ...) inputs, are done once, in nn.functional.cross_entropy). With w the class
    weights (ones when none are given), eps the label smoothing and logp = log_softmax(x):

        loss_n = (1 - eps) w[t_n] (-logp[n, t_n]) + (eps / C) sum_c w[c] (-logp[n, c])

    Rows whose target is ignore_index give 0; 'mean' divides the sum by sum_n w[t_n] over the
    rows that are not ignored (nan when every target is ignored, as in PyTorch). The gradient
    needs no softmax backward: with p = softmax(x) and W = sum_c w[c],

        d loss_n / d x[n] = ((1 - eps) w[t_n] + eps W / C) p - (1 - eps) w[t_n] onehot(t_n)
                            - (eps / C) w

    (without weights: p minus the smoothed one-hot target).
    """

    def forward(self, x, target, weight=None, ignore_index=-100, reduction="mean", eps=0.0):
        """x (N, C) logits, target (N,) int64, weight (C,) or None -> (N,) or a scalar."""
        xp = backend.xp_of(x)
        n, c = x.shape
        keep = target != ignore_index
        safe = xp.where(keep, target, 0)  # ignored rows pick class 0, then count for nothing
        w = xp.ones(c, dtype=x.dtype) if weight is None else weight.astype(x.dtype, copy=False)
        # BEGIN EXERCISE ch03: cross_entropy_forward - self.logp, self.wt = w[safe] * keep, loss
        logp = _log_softmax(x, 1)  # the row max is subtracted first, so exp never overflows
        wt = w[safe] * keep  # each row's weight w[t_n]; 0 where the target is ignored
        loss = -(1 - eps) * logp[xp.arange(n), safe] * wt
        if eps:
            loss -= (eps / c) * (logp * w).sum(axis=1) * keep
        self.logp, self.wt = logp, wt
        # END EXERCISE
        self.safe, self.keep, self.w, self.eps = safe, keep, w, eps
        self.weighted, self.reduction = weight is not None, reduction
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        self.total = wt.sum()  # 0-d, of x's dtype (stays on the GPU: no sync here)
        return loss.sum() / self.total

    def backward(self, g):
        """g: the upstream gradient, (N,) for 'none', a scalar otherwise -> dL/dx (N, C)."""
        xp = backend.xp_of(g)
        n, c = self.logp.shape
        eps, wt = self.eps, self.wt
        # BEGIN EXERCISE ch03: cross_entropy_backward - dL/dx (N, C) times the upstream g
        grad = xp.exp(self.logp)  # p = softmax(x)
        if self.weighted:  # without weights this row factor is 1
            grad *= ((1 - eps) * wt + (eps / c) * self.w.sum())[:, None]
        grad[xp.arange(n), self.safe] -= (1 - eps) * wt
        if eps:
            grad -= (eps / c) * self.w
        upstream = g if self.reduction != "mean" else g / self.total
        grad *= xp.where(self.keep, upstream, 0)[:, None]  # ignored rows: 0 (even when 0/0)
        # END EXERCISE
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


# softmax, masked_softmax and log_softmax take the fused CPU kernels of chapter 12 first
# (tinytorch/kernels/softmax.py: float32, last dim, at least its MIN_SIZE elements); the
# Functions above are their twins, and run the smaller calls.
def softmax(input, dim: int = -1):
    """torch.softmax: probabilities along `dim` (an all -inf row gives NaN, as in PyTorch)."""
    axis = _dim(dim, max(input.ndim, 1), "softmax")
    out = fused.dispatch_softmax(input, axis)
    return out if out is not None else Softmax.apply(input, axis=axis)


def masked_softmax(input, dim: int = -1):
    """softmax, except that a row that is all -inf (every entry masked) gives 0, not NaN, and a
    zero gradient: attention's weights for a query with no allowed key (see Softmax)."""
    axis = _dim(dim, max(input.ndim, 1), "masked_softmax")
    out = fused.dispatch_softmax(input, axis, zero_masked=True)
    return out if out is not None else Softmax.apply(input, axis=axis, zero_masked_rows=True)


def log_softmax(input, dim: int = -1):
    axis = _dim(dim, max(input.ndim, 1), "log_softmax")
    out = fused.dispatch_log_softmax(input, axis)
    return out if out is not None else LogSoftmax.apply(input, axis=axis)


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
