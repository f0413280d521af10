"""Chapter 07's GPT recipe trained by tinytorch and by a PyTorch twin, on the same machine.

nanoGPT's CPU Shakespeare recipe at character level: n_layer 4, n_head 4, n_embd 128,
block_size 64, batch 12, dropout 0, no biases; AdamW lr 1e-3, betas (0.9, 0.99), weight decay
0.1 on matrices; 100 warmup steps then cosine to 1e-4 at the last iteration; gradient clipping
at 1.0; a 90/10 split; validation loss = the mean over 20 batches. nanoGPT reports val 1.88.

Both frameworks start from the same weights (tinytorch's GPT-2 initialization, copied into the
twin) and see the same batches in the same order. Each trains in its own worker process
(tinytorch.bench_workers), with its library's own OpenMP defaults and its own peak memory
(ru_maxrss); the workers take turns, `--chunk` iterations at a time, so both see the same
minutes of the machine. The parent compares them and writes
benchmarks/results/gpt_cpu_cpu.{md,json,png}.

    python -m benchmarks.gpt_cpu                 # 2000 iterations each (several minutes)
    python -m benchmarks.gpt_cpu --iters 200 --name gpt_cpu_short   # shorter, its own files

tinytorch's step is tinytorch.train.train_step, the one every chapter trains with.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile

import numpy as np

from tinytorch.bench import RESULTS, import_torch, write_results
from tinytorch.bench_workers import (
    FRAMEWORKS,
    interleave,
    per_framework,
    read_job,
    timing,
    write_job,
)
from tinytorch.chapter import smooth

RECIPE = dict(
    n_layer=4,
    n_head=4,
    n_embd=128,
    block_size=64,
    batch_size=12,
    dropout=0.0,
    bias=False,
    lr=1e-3,
    min_lr=1e-4,
    betas=(0.9, 0.99),
    weight_decay=0.1,
    warmup=100,
    grad_clip=1.0,
    eval_iters=20,
)


def lr_at(it: int, iters: int) -> float:
    """nanoGPT's get_lr: linear warmup, cosine down to min_lr at the last iteration."""
    r = RECIPE
    if it < r["warmup"]:
        return r["lr"] * (it + 1) / (r["warmup"] + 1)
    ratio = min(1.0, (it - r["warmup"]) / max(1, iters - r["warmup"]))
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["lr"] - r["min_lr"])


def load_data():
    """Character ids of tinyshakespeare (nanoGPT's prepare.py: sorted characters), 90/10."""
    from tinytorch.data import dataset_path

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(data))
    return data[:n], data[n:], len(chars)


def batch_offsets(n_data: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, n_data - RECIPE["block_size"] - 1, (count, RECIPE["batch_size"])
    )


def make_batch(data, offsets):
    T = RECIPE["block_size"]
    x = np.stack([data[i : i + T] for i in offsets])
    y = np.stack([data[i + 1 : i + 1 + T] for i in offsets])
    return x, y


def evaluator(model, no_grad, as_tensor, train, val, offsets, val_offsets):
    """The evaluation both trainers run: the mean loss of each split over fixed batches, in
    eval mode, without a graph (no_grad and as_tensor are the library's own)."""

    def evaluate():
        model.eval()
        out = {}
        with no_grad():
            for split, data, offs in (
                ("train", train, offsets[: RECIPE["eval_iters"]]),
                ("val", val, val_offsets),
            ):
                losses = [model(*map(as_tensor, make_batch(data, o)))[1].item() for o in offs]
                out[split] = float(np.mean(losses))
        model.train()
        return out

    return evaluate


# ---- the two trainers: the same step, line for line -------------------------------------
def setup_tinytorch(cfg, init_state, train, val, offsets, val_offsets):
    """tinytorch's step(it) and evaluate() for the recipe."""
    import tinytorch as tt
    from tinytorch.models import GPT, GPTConfig
    from tinytorch.optim import AdamW
    from tinytorch.train import gpt_loss, train_step

    model = GPT(GPTConfig(**cfg))
    model.load_state_dict(init_state)
    opt = AdamW(
        model.optimizer_groups(RECIPE["weight_decay"]), lr=RECIPE["lr"], betas=RECIPE["betas"]
    )

    evaluate = evaluator(model, tt.no_grad, tt.tensor, train, val, offsets, val_offsets)

    def step(it):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, len(offsets))
        batch = tuple(tt.tensor(a) for a in make_batch(train, offsets[it]))
        return train_step(model, opt, batch, loss_fn=gpt_loss, clip_grad_norm=RECIPE["grad_clip"])

    return step, evaluate


def torch_gpt(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias):
    """The PyTorch twin: nanoGPT's model.py (same module names, so the same state_dict)."""
    torch = import_torch()
    from torch import nn
    from torch.nn import functional as F

    class LayerNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.bias = nn.Parameter(torch.zeros(n)) if bias else None

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
            self.resid_dropout = nn.Dropout(dropout)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout if self.training else 0.0, is_causal=True
            )
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = LayerNorm(n_embd), Attention(), LayerNorm(n_embd)
            self.mlp = nn.ModuleDict(
                dict(
                    c_fc=nn.Linear(n_embd, 4 * n_embd, bias=bias),
                    c_proj=nn.Linear(4 * n_embd, n_embd, bias=bias),
                )
            )
            self.drop = nn.Dropout(dropout)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            h = self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x))))
            return x + self.drop(h)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(
                dict(
                    wte=nn.Embedding(vocab_size, n_embd),
                    wpe=nn.Embedding(block_size, n_embd),
                    drop=nn.Dropout(dropout),
                    h=nn.ModuleList([Block() for _ in range(n_layer)]),
                    ln_f=LayerNorm(n_embd),
                )
            )
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight

        def forward(self, idx, targets):
            T = idx.shape[1]
            tr = self.transformer
            x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(T)))
            for block in tr.h:
                x = block(x)
            logits = self.lm_head(tr.ln_f(x))
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1
            )
            return logits, loss

    return GPT()


def setup_torch(cfg, init_state, train, val, offsets, val_offsets):
    """The PyTorch twin's step(it) and evaluate()."""
    torch = import_torch()

    model = torch_gpt(**cfg)
    model.load_state_dict({k: torch.tensor(v) for k, v in init_state.items()})
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": RECIPE["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=RECIPE["lr"], betas=RECIPE["betas"], fused=False)

    evaluate = evaluator(model, torch.no_grad, torch.from_numpy, train, val, offsets, val_offsets)

    def step(it):
        for g in opt.param_groups:
            g["lr"] = lr_at(it, len(offsets))
        x, y = (torch.from_numpy(a) for a in make_batch(train, offsets[it]))
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["grad_clip"])
        opt.step()
        return loss.item()

    return step, evaluate


class Run:
    """One framework's training run inside its benchmark worker (tinytorch.bench_workers):
    step(it) is timed, the evaluation every `eval_every` iterations (untimed(it)) is not."""

    def __init__(self, framework: str, workdir: str):
        init, spec = read_job(workdir)
        train, val, _ = load_data()
        setup = setup_tinytorch if framework == "tinytorch" else setup_torch
        self.iters, self.eval_every = len(spec["offsets"]), spec["eval_every"]
        self._step, self.evaluate = setup(
            spec["config"],
            init,
            train,
            val,
            np.array(spec["offsets"]),
            np.array(spec["val_offsets"]),
        )
        self.evals = []

    def untimed(self, it: int) -> None:
        if it % self.eval_every == 0:
            self.evals.append({"iter": it, **self.evaluate()})

    def step(self, it: int) -> float:
        loss = self._step(it)
        if it % 100 == 0 or it == self.iters - 1:
            print(f"  iter {it:5d}  loss {loss:.4f}", flush=True)
        return loss

    def finish(self) -> dict:
        self.evals.append({"iter": self.iters, **self.evaluate()})
        return {"evals": self.evals}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--chunk", type=int, default=50, help="iterations per turn (the workers alternate)"
    )
    p.add_argument("--notes", default="", help="a note for the result file (machine load...)")
    p.add_argument("--name", default="gpt_cpu", help="result file stem (default gpt_cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for both frameworks' BLAS/OpenMP pools (default: each library's own choice)",
    )
    p.add_argument(
        "--cpus",
        default="",
        help="e.g. 2,3:4,5 - run tinytorch pinned to CPUs "
        "2,3 and torch to 4,5 at the same time (machines with spare cores)",
    )
    args = p.parse_args(argv)

    import tinytorch as tt
    from tinytorch.models import GPT, GPTConfig

    train, val, vocab = load_data()
    cfg = {k: RECIPE[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")}
    cfg["vocab_size"] = vocab
    tt.manual_seed(args.seed)
    init = {k: v.detach().numpy() for k, v in GPT(GPTConfig(**cfg)).state_dict().items()}
    spec = {
        "config": cfg,
        "eval_every": args.eval_every,
        "offsets": batch_offsets(len(train), args.iters, args.seed).tolist(),
        "val_offsets": batch_offsets(len(val), RECIPE["eval_iters"], args.seed + 1).tolist(),
    }
    if args.threads:  # BLAS/OpenMP pools of both frameworks (read when the workers start)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    names = FRAMEWORKS
    cpus = (
        dict(zip(names, ({int(c) for c in part.split(",")} for part in args.cpus.split(":"))))
        if args.cpus
        else None
    )
    with tempfile.TemporaryDirectory() as work:
        write_job(work, init, spec)
        targets = per_framework("benchmarks.gpt_cpu:Run", work)
        print(f"{args.iters} iterations each, {args.chunk} at a time in turn", flush=True)
        runs = interleave(targets, args.iters, args.chunk, cpus=cpus, concurrent=bool(cpus))
    results = {
        n: dict(
            times=r["times"],
            losses=r["outputs"],
            evals=r["result"]["evals"],
            peak_rss_mb=r["peak_rss_mb"],
            base_rss_mb=r["rss_before_setup_mb"],
            torch_threads=r.get("torch_threads"),
        )
        for n, r in runs.items()
    }
    report(args, results)
    return 0


def report(args, results) -> None:
    skip = min(10, args.iters // 10)  # the first steps warm caches and allocators
    ms = {k: 1000 * statistics.median(r["times"][skip:]) for k, r in results.items()}
    rows = []
    for name, r in results.items():
        rows.append(
            {
                "framework": name,
                "ms/iter (median)": ms[name],
                "ratio vs torch": ms[name] / ms["torch"],
                f"val loss @ {args.iters}": r["evals"][-1]["val"],
                f"train loss @ {args.iters}": r["evals"][-1]["train"],
                "peak RSS MB": r["peak_rss_mb"],
                "RSS after imports MB": r["base_rss_mb"],
                "sum of step times s": sum(r["times"]),
            }
        )
    how = (
        f"at the same time, pinned to CPUs {args.cpus} (tinytorch:torch)"
        if args.cpus
        else f"taking turns, {args.chunk} iterations at a time, the order alternating"
    )
    notes = (
        "Recipe: nanoGPT's CPU Shakespeare-char run (n_layer 4, n_head 4, n_embd 128, "
        "block_size 64, batch 12, dropout 0, bias False, AdamW 1e-3 (0.9, 0.99) wd 0.1 on "
        "matrices, 100 warmup then cosine to 1e-4, clip 1.0). Both start from the same "
        "weights and see the same batches. Each framework trains in its own child process "
        f"({how}) so peak RSS is per framework; ms/iter excludes evaluation. "
        f"torch threads: {results['torch'].get('torch_threads')}; CPUs allowed: "
        f"{len(os.sched_getaffinity(0))}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}. "
        "nanoGPT reports val 1.88 for this recipe. Load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
        + ". "
        + args.notes
    )
    write_results(
        args.name,
        "cpu",
        list(rows[0]),
        rows,
        notes=notes,
        extra={
            "timing": timing(args.chunk),
            "curves": {
                k: {"losses": r["losses"], "evals": r["evals"], "times": r["times"]}
                for k, r in results.items()
            },
        },
    )
    plot(results, RESULTS / f"{args.name}_cpu.png")


def plot(results, path) -> None:
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    style = {"tinytorch": dict(lw=2.5, alpha=0.6), "torch": dict(lw=1.0, ls="--")}
    for name, r in results.items():
        losses = np.array(r["losses"])
        k = min(25, len(losses))
        curve = smooth(losses, k)
        a.plot(
            np.arange(len(curve)) + k - 1,
            curve,
            label=f"{name} train (avg of {k})",
            **style.get(name, {}),
        )
        ev = r["evals"]
        a.plot([e["iter"] for e in ev], [e["val"] for e in ev], "o--", label=f"{name} val")
        b.plot(1000 * np.array(r["times"]), lw=0.6, label=name)
    a.axhline(1.88, color="gray", lw=0.8, ls=":", label="nanoGPT val 1.88")
    a.set(xlabel="iteration", ylabel="loss (nats/char)", title="GPT on tinyshakespeare-char")
    b.set(xlabel="iteration", ylabel="ms per iteration", title="step time", yscale="log")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
