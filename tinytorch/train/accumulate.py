"""Gradient accumulation: k micro-batches make one optimizer step, as one big batch would.

The loss of a batch is a mean over its N examples. Split the batch into micro-batches of
n_1 + ... + n_k = N examples, each with its own mean loss L_i; then

    L = (1/N) sum over all examples = sum_i (n_i / N) * L_i

and, since the gradient is linear, grad L = sum_i (n_i / N) * grad L_i. Backpropagating each
micro-batch's loss scaled by its share n_i / N lets `.grad` (which adds up across backward
calls) hold exactly the big batch's gradient, while only one micro-batch's activations are
alive at a time. Memory of a batch of n, the step of a batch of N.
"""

from __future__ import annotations

import math

from ..nn.utils import clip_grad_norm_


class MicroBatches(list):
    """The k micro-batches of one optimizer step (a list); `train_step` accumulates over
    them instead of treating the list as one batch."""


class StepLoss(float):
    """A step's loss (a float, the big batch's mean) that also carries the gradient norm
    before clipping (`grad_norm`) and whether the optimizer stepped (`stepped`: False when
    the loss or the gradients were not finite, so the parameters stayed as they were)."""

    grad_norm: float = float("nan")
    stepped: bool = True


def batch_size(batch) -> int:
    """Examples in a batch: the first dimension of its first tensor (1 when it has none)."""
    first = batch[0] if isinstance(batch, list | tuple) else batch
    shape = getattr(first, "shape", None)
    return shape[0] if shape else 1


def accumulate_grad(model, micro_batches, loss_fn) -> float:
    """Backpropagate through every micro-batch, each loss scaled by its share of the examples
    (n_i / N), so the gradients add up to those of the mean loss over all N examples.
    Returns that mean loss (a float). Does not zero the gradients first."""
    # BEGIN EXERCISE ch08: accumulation - backward each loss times n_b / N; return the mean
    sizes = [batch_size(b) for b in micro_batches]
    total = sum(sizes)
    mean = 0.0
    for b, n in zip(micro_batches, sizes):
        loss = loss_fn(model, b)
        (loss * (n / total)).backward()
        mean += float(loss.item()) * (n / total)
    return mean
    # END EXERCISE


def grad_norm(parameters) -> float:
    """The L2 norm of all gradients seen as one vector (what clip_grad_norm_ measures)."""
    total = 0.0
    for p in parameters:
        if p.grad is not None:
            g = p.grad.data.reshape(-1)
            total += float(g @ g)  # a BLAS dot product: no temporary array
    return math.sqrt(total)


def accumulation_step(model, optimizer, micro_batches, loss_fn, clip_grad_norm=None) -> StepLoss:
    """One optimizer step over k micro-batches: zero the gradients, accumulate them, clip if
    asked, step. A non-finite loss or gradient norm skips the update (the caller stops)."""
    optimizer.zero_grad()
    loss = accumulate_grad(model, micro_batches, loss_fn)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if clip_grad_norm is not None:
        norm = float(clip_grad_norm_(params, clip_grad_norm).item())
    else:
        norm = grad_norm(params)
    out = StepLoss(loss)
    out.grad_norm = norm
    out.stepped = math.isfinite(loss) and math.isfinite(norm)
    if out.stepped:
        optimizer.step()
    return out
