"""The other pretraining objective (main.py --gpt): a GPT of the same size as the BERT,
pretrained to predict the next token on the same text, then fine-tuned GPT-1 style
(GPTForSequenceClassification: the last real token's state into a linear head).

The next-token loss has a target at every position, not only at the 15% masked ones, so a
step costs more in the output layer (T x V logits per sequence instead of ~0.15 T x V).
"""

from __future__ import annotations

import time

import numpy as np
from data import bucket_batches, collate
from recipes import Curve, _mean_loss, _stream, finetune

import tinytorch as tt
from tinytorch.models import GPT, GPTConfig, GPTForSequenceClassification
from tinytorch.optim import AdamW, body_lr_groups
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import gpt_loss, train_step


def next_token_batch(seqs, pad_id):
    """(input ids (B, T-1), targets (B, T-1)): each position predicts the next token; the
    positions whose next token is padding get target -1 (GPT's ignore_index)."""
    ids, mask = collate(seqs, pad_id)
    targets = np.where(mask[:, 1:] == 1, ids[:, 1:], -1)
    return tt.tensor(ids[:, :-1]), tt.tensor(targets)


def pretrain_and_finetune_gpt(args, tok, pre_ids, val_pre, train_set, dev_set, rng, common):
    """Pretrain a GPT for args.pretrain_steps steps, fine-tune it like the BERT; returns
    (name, model, fine-tuning curve, seconds including pretraining, pretraining curve)."""
    config = GPTConfig(
        block_size=args.max_len,
        vocab_size=tok.vocab_size,
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.hidden,
        dropout=0.1,
    )
    common["log"](f"\n== GPT: next-token pretraining, {args.pretrain_steps} steps ==")
    tt.manual_seed(args.seed)
    gpt = GPT(config)
    opt = AdamW(gpt.parameters(), lr=args.pretrain_lr, weight_decay=0.01)
    steps = args.pretrain_steps
    sched = WarmupCosineLR(opt, min(100, steps // 10), steps, min_ratio=0.1)
    order = bucket_batches([len(s) for s in val_pre], 256, None, shuffle=False)
    val = [next_token_batch([val_pre[j] for j in b], tok.pad_id) for b in order]
    stream = _stream([len(s) for s in pre_ids], args.pretrain_batch, rng)
    curve, start = Curve(), time.perf_counter()
    every = max(1, steps // (3 if args.quick else 20))
    for step in range(1, steps + 1):
        batch = next_token_batch([pre_ids[j] for j in next(stream)], tok.pad_id)
        curve.loss.append(train_step(gpt, opt, batch, gpt_loss, clip_grad_norm=1.0))
        sched.step()
        if step % every == 0 or step == steps:
            curve.eval_steps.append(step)
            curve.eval_values.append(_mean_loss(gpt, val, gpt_loss))
            common["log"](f"gpt pretrain {step:5d}/{steps} | held-out {curve.eval_values[-1]:.3f}")
    curve.seconds = time.perf_counter() - start

    common["log"]("\n== fine-tuning the pretrained GPT ==")
    tt.manual_seed(args.seed + 1)
    clf = GPTForSequenceClassification(config, num_labels=2, pad_token_id=tok.pad_id)
    clf.transformer.load_state_dict(gpt.transformer.state_dict())
    t0 = time.perf_counter()
    groups = body_lr_groups(clf, "score", args.lr, args.body_lr, 0.01)
    ft = finetune(clf, train_set, dev_set, epochs=args.epochs, param_groups=groups, rng=rng,
                  name="gpt", **common)  # fmt: skip
    return "GPT, pretrained", clf, ft, time.perf_counter() - t0 + curve.seconds, curve
