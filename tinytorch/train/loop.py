"""The first training loop: N optimizer steps, an optional schedule, validation every K steps.

    history = train(model, optimizer, train_loader, steps=5000, scheduler=sched,
                    val_data=val_loader, eval_every=500)
    history.train_loss[-1], history.val_loss[-1], history.lr

One step is always the same four moves: zero the gradients, compute the loss on a batch,
backpropagate, let the optimizer update the parameters (then the schedule sets the next lr).
Chapter 08 grows this into the full trainer (accumulation, checkpoints, metrics).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..autograd import no_grad
from ..nn import functional as F
from ..nn.utils import clip_grad_norm_
from .accumulate import MicroBatches, accumulation_step
from .accumulate import batch_size as _batch_size


@dataclass
class History:
    """What happened: the loss and lr of every step, and the validation loss at eval steps."""

    steps: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    val_steps: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(
            steps=self.steps,
            train_loss=self.train_loss,
            lr=self.lr,
            val_steps=self.val_steps,
            val_loss=self.val_loss,
            seconds=self.seconds,
        )


def lm_loss(model, batch):
    """Default loss: cross-entropy of model(x) against y for a batch (x, y).

    Logits (B, C) with targets (B,), or (B, T, C) with (B, T), flattened to one mean."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def gpt_loss(model, batch):
    """The loss a GPT computes itself: nanoGPT's forward(x, targets) returns (logits, loss)."""
    x, y = batch
    return model(x, y)[1]


def train_step(model, optimizer, batch, loss_fn=lm_loss, clip_grad_norm=None) -> float:
    """One optimizer step on one batch; returns the batch's loss (before the update).

    `batch` may also be a MicroBatches list of k micro-batches (chapter 08's gradient
    accumulation, see accumulate.py): the step then equals one on the k batches together
    and returns a StepLoss, a float that also carries the gradient norm."""
    if isinstance(batch, MicroBatches):
        return accumulation_step(model, optimizer, batch, loss_fn, clip_grad_norm)
    # BEGIN EXERCISE ch03: train_step - zero grads, loss, backward, clip if asked, step
    optimizer.zero_grad()
    loss = loss_fn(model, batch)
    loss.backward()
    if clip_grad_norm is not None:
        clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    # END EXERCISE
    return float(loss.item())


def _batches(source):
    """An endless stream of batches from a DataLoader / iterable (re-iterated every epoch) or
    from a function that returns a new batch on each call (nanoGPT's get_batch)."""
    if callable(source) and not hasattr(source, "__iter__"):
        while True:
            yield source()
    while True:
        empty = True
        for batch in source:
            empty = False
            yield batch
        if empty:
            raise ValueError(
                "the training data produced no batch (empty dataset, or "
                "drop_last with fewer examples than batch_size)"
            )


@no_grad()
def evaluate(model, data, loss_fn=lm_loss, max_batches: int | None = None) -> float:
    """Mean loss over `data` (up to max_batches batches), weighted by batch size, in eval mode
    and without recording a graph; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        stream = data
        if callable(data) and not hasattr(data, "__iter__"):
            if max_batches is None:
                raise ValueError("evaluate: give max_batches when the data is a function")
            stream = _batches(data)
        total = count = 0.0
        for i, batch in enumerate(stream):
            if max_batches is not None and i >= max_batches:
                break
            n = _batch_size(batch)
            total += float(loss_fn(model, batch).item()) * n
            count += n
        if count == 0:
            raise ValueError("evaluate: the validation data produced no batch")
        return total / count
    finally:
        model.train(was_training)


def train(
    model,
    optimizer,
    train_data,
    steps: int,
    *,
    loss_fn=lm_loss,
    scheduler=None,
    val_data=None,
    eval_every: int = 0,
    eval_batches: int | None = None,
    clip_grad_norm: float | None = None,
    log_every: int = 0,
    print_fn=print,
) -> History:
    """Train for `steps` optimizer steps and return the History.

    train_data: a DataLoader (or any iterable of batches, re-iterated each epoch) or a
    function returning a batch. loss_fn(model, batch) -> scalar loss (default lm_loss).
    scheduler: stepped after every optimizer step. val_data is evaluated (evaluate(), at most
    eval_batches batches) every eval_every steps and after the last step. log_every > 0
    prints a progress line that often.
    """
    if steps <= 0:
        raise ValueError(f"train: steps must be positive, got {steps}")
    hist = History()
    model.train()
    batches = _batches(train_data)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        lr = optimizer.param_groups[0]["lr"]
        loss = train_step(model, optimizer, next(batches), loss_fn, clip_grad_norm)
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"train: the loss became {loss} at step {step} (lr {lr:g}); "
                "lower the learning rate or clip the gradients"
            )
        if scheduler is not None:
            scheduler.step()
        hist.steps.append(step)
        hist.train_loss.append(loss)
        hist.lr.append(lr)
        evaluating = val_data is not None and (
            step == steps or (eval_every and step % eval_every == 0)
        )
        if evaluating:
            hist.val_steps.append(step)
            hist.val_loss.append(evaluate(model, val_data, loss_fn, eval_batches))
        if log_every and (step % log_every == 0 or step == steps):
            ms = 1e3 * (time.perf_counter() - start) / step
            val = f" | val {hist.val_loss[-1]:.4f}" if hist.val_loss else ""
            recent = hist.train_loss[-log_every:]
            print_fn(
                f"step {step:6d}/{steps} | train {sum(recent) / len(recent):.4f}{val} | "
                f"lr {lr:.3g} | {ms:.2f} ms/step"
            )
    hist.seconds = time.perf_counter() - start
    return hist
