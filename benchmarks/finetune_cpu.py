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

Each framework fine-tunes in its own worker process (tinytorch.bench_workers), with its
library's own OpenMP defaults: the parent prepares the batches and the initial weights once and
hands them over in a temporary folder, and the workers take turns, `--chunk` steps at a time,
the order alternating, so both see the same minutes of the machine. Each step is timed in its
worker; the table gives the median over all steps and the ratio tinytorch / torch. After
training, each worker predicts the dev labels with its own framework; the parent compares them.
PyTorch and transformers are imported only in the PyTorch worker (tinytorch.bench.import_torch
first), never by importing this module.

    python -m benchmarks.finetune_cpu                 # 1 epoch (1,053 steps of 64) each
    python -m benchmarks.finetune_cpu --steps 200 --name finetune_cpu_short
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from collections import Counter

import numpy as np

import tinytorch as tt
from tinytorch.bench import import_torch, write_results
from tinytorch.bench_workers import (
    FRAMEWORKS,
    interleave,
    per_framework,
    read_job,
    timing,
    write_job,
)
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


def prepare(batch_size, steps, seed):
    """The word vocabulary, the training batches (ids, mask, labels) in order, the dev set."""
    texts, labels = load("glue-sst2-train", "\t")
    dev_texts, dev_labels = load("sst2-dev", " ")
    counts = Counter(w for t in texts for w in t)
    itos = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [w for w, n in counts.most_common() if n >= 2]
    stoi = {w: i for i, w in enumerate(itos)}
    train_ids, dev_ids = encode(texts, stoi), encode(dev_texts, stoi)
    labels = np.array(labels)
    order = batch_order([len(s) for s in train_ids], batch_size, steps, seed)
    batches = [(*pad([train_ids[j] for j in b]), labels[b]) for b in order]
    return itos, batches, dev_ids, np.array(dev_labels)


def dev_batches(dev_ids):
    """(indices, ids, mask) of the dev set in batches of 128 similar lengths."""
    order = np.argsort([len(s) for s in dev_ids], kind="stable")
    for s in range(0, len(order), 128):
        b = order[s : s + 128]
        yield (b, *pad([dev_ids[j] for j in b]))


# ---- the two trainers: the same step, line for line -------------------------------------
def setup_tinytorch(job, init):
    """tinytorch's model (from `init`), step(i) and predict(ids, mask) -> labels."""
    model = BertForSequenceClassification(BertConfig(**job["config"]), num_labels=2)
    model.load_state_dict(init)
    opt = AdamW(model.parameters(), lr=job["lr"], weight_decay=0.01)

    def loss_fn(model, batch):
        ids, mask, y = batch
        return F.cross_entropy(model(tt.tensor(ids), mask), tt.tensor(y))

    def step(i):
        for g in opt.param_groups:
            g["lr"] = job["lr"] * lr_factor(i, job["steps"])
        return train_step(model, opt, job["batches"][i], loss_fn, clip_grad_norm=1.0)

    def predict(ids, mask):
        with tt.no_grad():
            return model(tt.tensor(ids), mask).data.argmax(-1)

    return model, step, predict


def setup_torch(job, init):
    """transformers' twin (from `init`), step(i) and predict(ids, mask) -> labels."""
    torch = import_torch()
    import transformers  # imports torch: only after import_torch

    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(**job["config"], num_labels=2, attn_implementation="eager")
    )
    state = {k: torch.from_numpy(v) for k, v in init.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    opt = torch.optim.AdamW(model.parameters(), lr=job["lr"], weight_decay=0.01)

    def step(i):
        for g in opt.param_groups:
            g["lr"] = job["lr"] * lr_factor(i, job["steps"])
        ids, mask, y = (torch.from_numpy(a) for a in job["batches"][i])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids, attention_mask=mask).logits, y
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    def predict(ids, mask):
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
            return out.logits.argmax(-1).numpy()

    return model, step, predict


class Run:
    """One framework's fine-tuning inside its benchmark worker (tinytorch.bench_workers):
    step(i) is timed; finish() predicts the dev labels with this framework."""

    def __init__(self, framework: str, workdir: str):
        if framework == "torch":
            import_torch()  # before anything else: PyTorch's own OpenMP defaults
        init, self.job = read_job(workdir)
        setup = setup_tinytorch if framework == "tinytorch" else setup_torch
        self.framework = framework
        self.model, self._step, self.predict = setup(self.job, init)
        self.model.train()

    def step(self, i: int) -> float:
        loss = self._step(i)
        if i % 100 == 0 or i == self.job["steps"] - 1:
            print(f"  {self.framework:9s} step {i:5d}  loss {loss:.4f}", flush=True)
        return loss

    def finish(self) -> dict:
        self.model.eval()
        pred = np.zeros(len(self.job["dev_ids"]), dtype=np.int64)
        for b, ids, mask in dev_batches(self.job["dev_ids"]):
            pred[b] = self.predict(ids, mask)
        return {"dev_pred": pred.tolist()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1053, help="fine-tuning steps (1053 = 1 epoch)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk", type=int, default=50, help="steps per turn (the workers alternate)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="finetune_cpu")
    args = p.parse_args(argv)

    itos, batches, dev_ids, dev_labels = prepare(args.batch_size, args.steps, args.seed)
    config = dict(
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
    ours = BertForSequenceClassification(BertConfig(**config), num_labels=2)
    init = {k: v.detach().numpy() for k, v in ours.state_dict().items()}
    job = dict(config=config, batches=batches, dev_ids=dev_ids, lr=args.lr, steps=args.steps)
    names = FRAMEWORKS
    with tempfile.TemporaryDirectory() as work:
        write_job(work, init, job)
        print(f"{args.steps} steps each, {args.chunk} at a time in turn", flush=True)
        runs = interleave(
            per_framework("benchmarks.finetune_cpu:Run", work), args.steps, args.chunk
        )

    pred = {n: np.array(runs[n]["result"]["dev_pred"]) for n in names}
    acc = {n: float((pred[n] == dev_labels).mean()) for n in names}
    agree = float((pred["tinytorch"] == pred["torch"]).mean())
    ms = {n: 1e3 * statistics.median(runs[n]["times"]) for n in names}
    losses = {n: runs[n]["outputs"] for n in names}
    first = min(10, args.steps)
    loss_gap = max(abs(a - b) for a, b in zip(losses["tinytorch"][:first], losses["torch"][:first]))
    rows = [
        {
            "framework": n,
            "ms/step (median)": ms[n],
            "ratio vs torch": ms[n] / ms["torch"],
            "dev accuracy": acc[n],
        }
        for n in names
    ]
    for row in rows:
        print(
            " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else str(v) for k, v in row.items())
        )
    gap = abs(acc["tinytorch"] - acc["torch"])
    notes = (
        f"{args.steps} fine-tuning steps of {args.batch_size} GLUE SST-2 phrases (length-"
        f"bucketed; vocabulary {len(itos):,} words), BERT 2 x 128 (4 heads, FFN 512, dropout "
        f"0), the same initial weights and batches (largest training-loss gap over the first "
        f"{first} steps {loss_gap:.2e}); AdamW lr {args.lr:g} wd 0.01, 6% warmup "
        f"then cosine to 0, clip 1.0. Dev: stsa.binary.dev (872), each model evaluated by its "
        f"own framework. Dev accuracy gap "
        f"{gap:.4f} ({'within' if gap <= 0.01 else 'NOT within'} 0.01); the two models give "
        f"the same label on {agree:.1%} of the dev sentences. Timing: each framework trains in "
        f"its own worker process with its library's own OpenMP defaults "
        f"(tinytorch.bench_workers), in turns of {args.chunk} steps, the order alternating each "
        f"turn; ms/step is the median over all {args.steps} steps. torch threads "
        f"{runs['torch'].get('torch_threads')}, "
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
        extra={
            "timing": timing(args.chunk),
            "step_times_s": {n: runs[n]["times"] for n in names},
            "losses": losses,
            "dev_agreement": agree,
            "steps": args.steps,
        },
    )
    return 0 if gap <= 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
