"""Fine-tuning chapter 09's small encoder: tinytorch against a PyTorch twin (CPU).

The model is chapter 09's BERT (2 layers, hidden 128, 4 heads, FFN 512, a word vocabulary of
the GLUE SST-2 phrases) under BertForSequenceClassification. The twin is transformers'
BertForSequenceClassification with the same config and the very same weights (tinytorch's
initialization, copied by state_dict: the parameter names are Hugging Face's). Both fine-tune
on the same length-bucketed batches of GLUE's SST-2 train phrases, in the same order, with
AdamW (lr 1e-3, weight decay 0.01, the same per-step learning rates: 6% warmup then cosine
to 0) and clipping at 1.0; dropout is 0 so that the two runs differ only by floating point.
Then both are evaluated on stsa.binary.dev (872 sentences): the dev accuracies must agree
within 0.01.

Steps run in chunks of --chunk steps, the two frameworks alternating chunk by chunk, so a
change of machine load hits both; each chunk is timed with tinytorch.bench.time_cpu (its
median step), and the table gives the median over chunks and the ratio tinytorch / torch.

    python -m benchmarks.finetune_cpu                 # 1 epoch (1,053 steps of 64) each
    python -m benchmarks.finetune_cpu --steps 200 --name finetune_cpu_short
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections import Counter

import numpy as np

import tinytorch as tt
from tinytorch.bench import time_cpu, write_results
from tinytorch.data import dataset_path
from tinytorch.models import BertConfig, BertForSequenceClassification
from tinytorch.nn import functional as F
from tinytorch.optim import AdamW
from tinytorch.train import train_step

PAD, UNK, CLS, SEP = 0, 1, 2, 3
MAX_LEN = 64


def load(name, sep):
    rows = dataset_path(name).read_text(encoding="utf-8").splitlines()
    if name == "glue-sst2-train":
        pairs = [r.rsplit("\t", 1)[::-1] for r in rows[1:]]  # PHRASE<TAB>LABEL
    else:
        pairs = [r.split(sep, 1) for r in rows]  # LABEL SENTENCE
    codes = {"-lrb-": "(", "-rrb-": ")"}
    return [[codes.get(w, w) for w in s.split()] for _, s in pairs], [int(y) for y, _ in pairs]


def encode(texts, stoi):
    return [[CLS, *[stoi.get(w, UNK) for w in t[: MAX_LEN - 2]], SEP] for t in texts]


def batch_order(lengths, batch_size, steps, seed):
    """Index batches of similar lengths (pools of 50 batches sorted by length), epoch after
    epoch: chapter 09's bucketing."""
    rng, out = np.random.default_rng(seed), []
    lengths = np.asarray(lengths)
    while len(out) < steps:
        idx = rng.permutation(len(lengths))
        epoch = []
        for s in range(0, len(idx), batch_size * 50):
            part = idx[s : s + batch_size * 50]
            part = part[np.argsort(lengths[part], kind="stable")]
            epoch += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        out += [epoch[i] for i in rng.permutation(len(epoch))]
    return out[:steps]


def pad(seqs):
    T = max(map(len, seqs))
    ids = np.zeros((len(seqs), T), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    return ids, mask


def lr_factor(step, steps):
    """Warmup over the first 6% of the steps, then a cosine to 0 (chapter 09's schedule)."""
    warm = max(1, int(0.06 * steps))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1053, help="fine-tuning steps (1053 = 1 epoch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=50, help="steps per timed chunk")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="finetune_cpu")
    args = p.parse_args(argv)

    import torch
    import transformers

    texts, labels = load("glue-sst2-train", "\t")
    dev_texts, dev_labels = load("sst2-dev", " ")
    counts = Counter(w for t in texts for w in t)
    itos = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [w for w, n in counts.most_common() if n >= 2]
    stoi = {w: i for i, w in enumerate(itos)}
    train_ids, dev_ids = encode(texts, stoi), encode(dev_texts, stoi)
    labels, dev_labels = np.array(labels), np.array(dev_labels)
    order = batch_order([len(s) for s in train_ids], args.batch_size, args.steps, args.seed)

    hp = dict(
        vocab_size=len(itos),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=MAX_LEN,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    tt.manual_seed(args.seed)
    ours = BertForSequenceClassification(BertConfig(**hp), num_labels=2)
    twin = transformers.BertForSequenceClassification(
        transformers.BertConfig(**hp, num_labels=2, attn_implementation="eager")
    )
    state = {k: torch.tensor(v.data.copy()) for k, v in ours.state_dict().items()}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)

    opt = AdamW(ours.parameters(), lr=args.lr, weight_decay=0.01)
    topt = torch.optim.AdamW(twin.parameters(), lr=args.lr, weight_decay=0.01)
    batches = [(*pad([train_ids[j] for j in b]), labels[b]) for b in order]
    pos = {"tinytorch": 0, "torch": 0}

    def loss_fn(model, batch):
        ids, mask, y = batch
        return F.cross_entropy(model(tt.tensor(ids), mask), tt.tensor(y))

    def step_tinytorch():
        i = pos["tinytorch"]
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(i, args.steps)
        train_step(ours, opt, batches[i], loss_fn, clip_grad_norm=1.0)
        pos["tinytorch"] += 1

    def step_torch():
        i = pos["torch"]
        for g in topt.param_groups:
            g["lr"] = args.lr * lr_factor(i, args.steps)
        ids, mask, y = (torch.from_numpy(a) for a in batches[i])
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(input_ids=ids, attention_mask=mask).logits, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        topt.step()
        pos["torch"] += 1

    ours.train()
    twin.train()
    chunks = {"tinytorch": [], "torch": []}
    while pos["torch"] < args.steps:
        n = min(args.chunk, args.steps - pos["torch"])
        chunks["tinytorch"].append(time_cpu(step_tinytorch, warmup=0, repeat=n))
        chunks["torch"].append(time_cpu(step_torch, warmup=0, repeat=n))
        print(
            f"step {pos['torch']}/{args.steps}: chunk medians "
            f"{1e3 * chunks['tinytorch'][-1]:.1f} / {1e3 * chunks['torch'][-1]:.1f} ms",
            flush=True,
        )

    order_dev = np.argsort([len(s) for s in dev_ids], kind="stable")
    acc = {}
    ours.eval()
    twin.eval()
    with tt.no_grad(), torch.no_grad():
        pred_tt, pred_torch = np.zeros(len(dev_ids), int), np.zeros(len(dev_ids), int)
        for s in range(0, len(order_dev), 128):
            b = order_dev[s : s + 128]
            ids, mask = pad([dev_ids[j] for j in b])
            pred_tt[b] = ours(tt.tensor(ids), mask).data.argmax(-1)
            out = twin(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
            pred_torch[b] = out.logits.argmax(-1).numpy()
    acc = {"tinytorch": (pred_tt == dev_labels).mean(), "torch": (pred_torch == dev_labels).mean()}
    agree = float((pred_tt == pred_torch).mean())
    ms = {k: 1e3 * statistics.median(v) for k, v in chunks.items()}
    rows = [
        {
            "framework": k,
            "ms/step (median)": ms[k],
            "ratio vs torch": ms[k] / ms["torch"],
            "dev accuracy": float(acc[k]),
        }
        for k in ("tinytorch", "torch")
    ]
    gap = abs(acc["tinytorch"] - acc["torch"])
    notes = (
        f"{args.steps} fine-tuning steps of {args.batch_size} GLUE SST-2 phrases (length-"
        f"bucketed; vocabulary {len(itos):,} words), BERT 2 x 128 (4 heads, FFN 512, dropout "
        f"0), the same initial weights and batches; AdamW lr {args.lr:g} wd 0.01, 6% warmup "
        f"then cosine to 0, clip 1.0. Dev: stsa.binary.dev (872). Dev accuracy gap "
        f"{gap:.4f} ({'within' if gap <= 0.01 else 'NOT within'} 0.01); the two models give "
        f"the same label on {agree:.1%} of the dev sentences. Timing: the median of "
        f"{len(chunks['torch'])} chunk medians of up to {args.chunk} steps, the frameworks "
        f"alternating chunk by chunk. torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}. "
        "Load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
        + "."
    )
    write_results(
        args.name,
        "cpu",
        list(rows[0]),
        rows,
        notes=notes,
        extra={"chunk_medians_s": chunks, "dev_agreement": agree, "steps": args.steps},
    )
    return 0 if gap <= 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
