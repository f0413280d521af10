"""Chapter 09's two stages as functions: masked-LM pretraining and fine-tuning a classifier.

Both go through tinytorch.train.train_step (zero grads, loss, backward, clip, step) with
AdamW and nanoGPT's warmup + cosine schedule; batches are length-bucketed (data.py).

    hist = pretrain_mlm(mlm, texts_ids, tok, steps=1500, batch_size=128, lr=1e-3, rng=rng)
    hist = finetune(model, train_set, dev_set, loss_fn=bert_loss, epochs=2, ...)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from data import bucket_batches, collate

import tinytorch as tt
from tinytorch.autograd import no_grad
from tinytorch.data.masking import mask_tokens
from tinytorch.nn import functional as F
from tinytorch.optim import AdamW
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import train_step


@dataclass
class Curve:
    """One run: the loss of every step, and evaluations (step, value) along the way."""

    loss: list = field(default_factory=list)
    eval_steps: list = field(default_factory=list)
    eval_values: list = field(default_factory=list)
    seconds: float = 0.0


def _stream(lengths, batch_size, rng):
    """Length-bucketed batches of indices, epoch after epoch, reshuffled each time."""
    while True:
        yield from bucket_batches(lengths, batch_size, rng)


# ---- stage 1: masked-LM pretraining -----------------------------------------------------------
def sparse_mlm_loss(model, batch):
    """BERT's masked-LM loss for train_step, batch = (inputs (B, T), attention_mask (B, T),
    labels (B, T), -100 where nothing was masked). BertForMaskedLM.masked_lm_loss runs the
    vocabulary projection (H -> V) only at the ~15% masked positions: the same loss as
    forward(..., labels=labels), about 7x less work in the step's largest matrix product."""
    inputs, mask, labels = batch
    return model.masked_lm_loss(tt.tensor(inputs), labels, attention_mask=mask)


def mlm_batch(seqs, tok, vocab_size, rng):
    ids, mask = collate(seqs, tok.pad_id)
    inputs, labels = mask_tokens(
        ids,
        mask_token_id=tok.mask_id,
        vocab_size=vocab_size,
        special_ids=(tok.cls_id, tok.sep_id, tok.unk_id),
        pad_id=tok.pad_id,
        rng=rng,
    )
    return inputs, mask, labels


def pretrain_mlm(
    model, seqs, tok, *, steps, batch_size, lr, rng, val_seqs=(), eval_every=100, log=print
) -> Curve:
    """Train a BertForMaskedLM on token-id lists `seqs` for `steps` steps; every eval_every
    steps, the masked-LM loss on val_seqs with masks drawn once (the same every time)."""
    vocab_size = model.config.vocab_size
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = WarmupCosineLR(opt, min(100, steps // 10), steps, min_ratio=0.1)
    val = [
        mlm_batch([val_seqs[j] for j in b], tok, vocab_size, np.random.default_rng(i))
        for i, b in enumerate(bucket_batches([len(s) for s in val_seqs], 256, rng, False))
    ]
    stream = _stream([len(s) for s in seqs], batch_size, rng)
    curve, start = Curve(), time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        batch = mlm_batch([seqs[j] for j in next(stream)], tok, vocab_size, rng)
        curve.loss.append(train_step(model, opt, batch, sparse_mlm_loss, clip_grad_norm=1.0))
        sched.step()
        if val and (step % eval_every == 0 or step == steps):
            curve.eval_steps.append(step)
            curve.eval_values.append(_mean_loss(model, val, sparse_mlm_loss))
            ms = 1e3 * (time.perf_counter() - start) / step
            log(
                f"pretrain {step:5d}/{steps} | train {np.mean(curve.loss[-eval_every:]):.3f} | "
                f"held-out {curve.eval_values[-1]:.3f} | {ms:.0f} ms/step"
            )
    curve.seconds = time.perf_counter() - start
    return curve


@no_grad()
def _mean_loss(model, batches, loss_fn) -> float:
    model.eval()
    total = sum(float(loss_fn(model, b).item()) for b in batches) / len(batches)
    model.train()
    return total


# ---- stage 2: fine-tuning a classifier --------------------------------------------------------
def classifier_loss(model, batch):
    """Cross-entropy of model(input_ids, attention_mask) -> (B, 2) logits against labels."""
    ids, mask, labels = batch
    return F.cross_entropy(model(tt.tensor(ids), mask), tt.tensor(labels))


@no_grad()
def predict(model, seqs, pad_id, batch_size: int = 256) -> np.ndarray:
    """Predicted labels (N,) for token-id lists, in their order (eval mode, no graph)."""
    was = model.training
    model.eval()
    out = np.zeros(len(seqs), dtype=np.int64)
    for b in bucket_batches([len(s) for s in seqs], batch_size, None, shuffle=False):
        ids, mask = collate([seqs[j] for j in b], pad_id)
        out[b] = model(tt.tensor(ids), mask).data.argmax(-1)
    model.train(was)
    return out


def finetune(
    model,
    train_set,
    dev_set,
    *,
    pad_id,
    epochs,
    batch_size,
    param_groups,
    rng,
    evals_per_epoch=4,
    name="model",
    log=print,
) -> Curve:
    """Train a classifier (model(input_ids, attention_mask) -> logits) on train_set
    (data.Encoded) for `epochs` epochs (a fraction is fine), with AdamW on `param_groups`
    (body_lr_groups or plain), warmup over the first 6% of the steps then a cosine to 0;
    dev accuracy evals_per_epoch times per epoch and at the end."""
    per_epoch = -(-len(train_set) // batch_size)
    steps = max(1, round(epochs * per_epoch))
    opt = AdamW(param_groups, weight_decay=0.01)
    sched = WarmupCosineLR(opt, max(1, int(0.06 * steps)), steps, min_ratio=0.0)
    labels = np.asarray(train_set.labels)
    dev_labels = np.asarray(dev_set.labels)
    every = max(1, per_epoch // evals_per_epoch)
    stream = _stream([len(s) for s in train_set.ids], batch_size, rng)
    curve, start = Curve(), time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        b = next(stream)
        ids, mask = collate([train_set.ids[j] for j in b], pad_id)
        loss = train_step(model, opt, (ids, mask, labels[b]), classifier_loss, clip_grad_norm=1.0)
        curve.loss.append(loss)
        sched.step()
        if step % every == 0 or step == steps:
            acc = float((predict(model, dev_set.ids, pad_id) == dev_labels).mean())
            curve.eval_steps.append(step)
            curve.eval_values.append(acc)
            ms = 1e3 * (time.perf_counter() - start) / step
            log(
                f"{name} {step:5d}/{steps} | train {np.mean(curve.loss[-every:]):.3f} | "
                f"dev accuracy {acc:.4f} | {ms:.0f} ms/step"
            )
    curve.seconds = time.perf_counter() - start
    return curve
