"""Matrix multiplication: 1-D, 2-D and batched (broadcast over leading dims), as torch.matmul."""

from __future__ import annotations

from ..autograd import Function, unbroadcast


class MatMul(Function):
    """out = a @ b. 1-D operands are promoted to matrices (a row for a, a column for b) and the
    added dimension is dropped from the result; the backward does the same in reverse:
    grad_a = grad @ b^T and grad_b = a^T @ grad, each summed over broadcast batch dims."""

    def forward(self, a, b):
        self.a, self.b = a, b
        if b.ndim == 2 and a.ndim > 2:  # one weight for every batch: one (B*M, K) @ (K, N)
            return _folded(a, b)  # product instead of B small ones (BLAS is faster on one)
        return a @ b

    def backward(self, g):
        na, nb = self.needs_input_grad  # a product per input, only for those that need it
        a, b = self.a, self.b
        ga = gb = None
        # BEGIN EXERCISE ch01: matmul_backward - grad_a = g @ b^T, grad_b = a^T @ g (1-D, batches)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:  # (this order also turns a 0-d grad of vec @ vec into (1, 1))
            g = g[..., None]
        if a.ndim == 1:
            g = g[..., None, :]
        if na and b.ndim == 2 and g.ndim > 2:
            ga = _folded(g, b.T)  # (..., M, N) @ (N, K): a's shape already, nothing to sum
        elif na:
            ga = unbroadcast(g @ b2.swapaxes(-1, -2), a2.shape).reshape(a.shape)
        if nb and b.ndim == 2:  # one weight for every batch: one (K, M*B) @ (M*B, N) product
            a_m, g_m = a2.reshape(-1, a2.shape[-1]), g.reshape(-1, g.shape[-1])
            if b.flags.f_contiguous and not b.flags.c_contiguous:
                gb = (g_m.T @ a_m).T  # b is W.T (Linear): its gradient in its own layout, so
            else:  # the transpose's backward hands W a contiguous gradient (no strided copy)
                gb = a_m.T @ g_m
        elif nb:
            gb = unbroadcast(a2.swapaxes(-1, -2) @ g, b2.shape).reshape(b.shape)
        # END EXERCISE
        return ga, gb


def _folded(a, b):
    """a (..., M, K) @ b (K, N) as one 2-D product: (prod(...) * M, K) @ (K, N), reshaped."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[-1],))


def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"matmul: both operands need at least 1 dim, got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise RuntimeError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
            f"multiplied ({k_a} != {k_b})"
        )
    if a.dtype != b.dtype:
        raise RuntimeError(
            f"matmul: expected both operands to have the same dtype, got {a.dtype} and {b.dtype}"
        )
    return MatMul.apply(a, b)
