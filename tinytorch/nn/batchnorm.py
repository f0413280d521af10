"""Batch normalization (Ioffe & Szegedy, 2015): BatchNorm1d and BatchNorm2d, as torch.nn.

In training, each channel c is normalized with the statistics of the current batch, taken
over every dim except the channel dim 1:

    y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c      (var_c biased: / n)

and running estimates are updated for evaluation, where the batch may be a single example:

    running_mean = (1 - momentum) * running_mean + momentum * mean_c
    running_var  = (1 - momentum) * running_var  + momentum * var_c * n / (n - 1)  (unbiased)

momentum=None replaces the constant momentum by 1 / num_batches_tracked: a plain cumulative
average of every batch seen. In eval mode y uses the running estimates, so the output of
one example no longer depends on the rest of its batch. With track_running_stats=False there
are no estimates and batch statistics are used in both modes.

The normalization is written with differentiable tensor ops (as layer_norm is), so autograd
derives the backward, including the gradient through the batch mean and variance.
"""

from __future__ import annotations

from .. import creation, ops
from ..autograd import no_grad
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "batch_norm"]


def batch_norm(
    input,
    running_mean,
    running_var,
    weight=None,
    bias=None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
):
    """torch.nn.functional.batch_norm: input (N, C, *) -> (N, C, *).

    training=True normalizes with the batch's statistics and, when running_mean/running_var
    are given, updates them in place with `momentum`; training=False uses the running ones.
    """
    C = input.shape[1]
    dims = (0, *range(2, input.ndim))
    shape = (1, C) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over (N, C, *)
    if training:
        n = input.data.size // C  # values per channel
        if n <= 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size "
                f"{tuple(input.shape)}"
            )
        # BEGIN EXERCISE ch08: batch_norm - batch mean, biased var; running stats (unbiased var)
        mean = ops.mean(input, dims, keepdim=True)
        centered = input - mean
        var = ops.mean(centered * centered, dims, keepdim=True)
        out = centered * (var + eps) ** -0.5
        if running_mean is not None:
            with no_grad():
                running_mean.data *= 1 - momentum
                running_mean.data += momentum * mean.data.reshape(C)
        if running_var is not None:
            with no_grad():
                running_var.data *= 1 - momentum
                running_var.data += momentum * var.data.reshape(C) * (n / (n - 1))
        # END EXERCISE
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in eval mode needs running_mean and running_var")
        mean = ops.reshape(running_mean.detach(), shape)
        var = ops.reshape(running_var.detach(), shape)
        out = (input - mean) * (var + eps) ** -0.5
    if weight is not None:
        out = out * ops.reshape(weight, shape)
    if bias is not None:
        out = out + ops.reshape(bias, shape)
    return out


class _BatchNorm(Module):
    _dims: tuple = ()  # the input ranks this class accepts

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device="cpu",
        dtype=None,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = self.bias = None
        if affine:
            self.weight = Parameter(creation.ones(num_features, dtype=dtype, device=device))
            self.bias = Parameter(creation.zeros(num_features, dtype=dtype, device=device))
        if track_running_stats:
            self.register_buffer(
                "running_mean", creation.zeros(num_features, dtype=dtype, device=device)
            )
            self.register_buffer(
                "running_var", creation.ones(num_features, dtype=dtype, device=device)
            )
            self.register_buffer(
                "num_batches_tracked", creation.tensor(0, dtype="int64", device=device)
            )
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, input) -> None:
        if input.ndim not in self._dims:
            want = " or ".join(f"{d}D" for d in self._dims)
            raise ValueError(
                f"{type(self).__name__}: expected {want} input, got {input.ndim}D input of "
                f"shape {tuple(input.shape)}"
            )
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}): input has "
                f"{input.shape[1]} channels in dim 1 (shape {tuple(input.shape)})"
            )

    def forward(self, input):
        self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # cumulative moving average of every batch so far
                factor = 1.0 / int(self.num_batches_tracked.data)
        # batch statistics in training, and always when there are no running estimates
        use_batch = self.training or self.running_mean is None
        update = self.training and self.track_running_stats
        return batch_norm(
            input,
            self.running_mean if update or not use_batch else None,
            self.running_var if update or not use_batch else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs, per channel C."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, per channel C."""

    _dims = (4,)
