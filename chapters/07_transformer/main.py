"""Chapter 07: a GPT trained on Shakespeare, character by character (nanoGPT's CPU recipe).

    python -m tinytorch.course run 7            # the recipe: 2000 iterations (minutes)
    python -m tinytorch.course run 7 --quick    # a smoke run: 30 iterations
    python -m tinytorch.course run 7 --record   # also write benchmarks/results/gpt_ch07_*

The recipe is nanoGPT's `train_shakespeare_char` config shrunk for a CPU, as its README
gives it: n_layer 4, n_head 4, n_embd 128, block_size 64, batch 12, dropout 0, no biases;
AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on matrices only; 100 warmup iterations
then a cosine down to 1e-4 at the last one; gradients clipped at norm 1.0; the first 90% of
the text to train on, the last 10% to validate; validation loss = the mean of 20 batches.
nanoGPT reports a validation loss of 1.88 after 2000 iterations.

Written into --out (default chapters/07_transformer/out/): loss.png, samples.txt (greedy,
temperature, top-k and top-p samples, and the KV cache's speed-up), metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import this checkout's tinytorch

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import tinytorch as tt  # noqa: E402
from tinytorch.data import dataset_path  # noqa: E402
from tinytorch.generate import generate  # noqa: E402
from tinytorch.models import GPT, GPTConfig  # noqa: E402
from tinytorch.nn.utils import clip_grad_norm_  # noqa: E402
from tinytorch.optim import AdamW  # noqa: E402
from tinytorch.optim.lr_scheduler import WarmupCosineLR  # noqa: E402
from tinytorch.text import CharTokenizer  # noqa: E402

NANOGPT_VAL = 1.88  # nanoGPT's README, this recipe on a CPU


def get_batch(ids, rng, args, device):
    """nanoGPT's get_batch: batch_size random windows; targets are the inputs shifted by one."""
    ix = rng.integers(0, len(ids) - args.block_size - 1, args.batch_size)
    x = np.stack([ids[i : i + args.block_size] for i in ix])
    y = np.stack([ids[i + 1 : i + 1 + args.block_size] for i in ix])
    return tt.tensor(x, device=device), tt.tensor(y, device=device)


def estimate_loss(model, splits, args, device, it, n_batches=None):
    """Mean loss over eval_iters random batches of each split, in eval mode, no graph.

    The batches depend only on (seed, it), not on how often we evaluated before, so two runs
    of one seed score the same batches. 20 batches of 768 characters are a noisy estimate
    (about +-0.02 nats); the run also reports a 200-batch validation loss at the end.
    """
    model.eval()
    out = {}
    with tt.no_grad():
        for name, ids in splits.items():
            rng = np.random.default_rng([args.seed, it, len(ids)])
            losses = [
                model(*get_batch(ids, rng, args, device))[1].item()
                for _ in range(n_batches or args.eval_iters)
            ]
            out[name] = float(np.mean(losses))
    model.train()
    return out


def train(model, splits, args, device):
    opt = AdamW(model.optimizer_groups(args.weight_decay), lr=args.lr, betas=(0.9, 0.99))
    sched = WarmupCosineLR(
        opt, warmup_steps=args.warmup, max_steps=args.iters, min_ratio=args.min_lr / args.lr
    )
    rng = np.random.default_rng(args.seed)
    hist = {"iter": [], "loss": [], "ms": [], "evals": []}
    for it in range(args.iters + 1):
        if it % args.eval_interval == 0 or it == args.iters:
            losses = estimate_loss(model, splits, args, device, it)
            hist["evals"].append({"iter": it, **losses})
            print(
                f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}",
                flush=True,
            )
        if it == args.iters:
            break
        t0 = time.perf_counter()
        x, y = get_batch(splits["train"], rng, args, device)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        sched.step()
        lossf = loss.item()  # also waits for the GPU, so the time below is the step's
        hist["ms"].append(1000 * (time.perf_counter() - t0))
        hist["iter"].append(it)
        hist["loss"].append(lossf)
        if it % args.log_interval == 0:
            print(
                f"iter {it}: loss {lossf:.4f}, time {hist['ms'][-1]:.1f}ms, "
                f"lr {sched.get_last_lr()[0]:.2e}",
                flush=True,
            )
    return hist


def samples(model, tok, args, device):
    """The same prompt under each decoding strategy, and the KV cache's effect on speed."""
    prompt = tt.tensor([tok.encode("\n")], device=device)
    n = args.sample_tokens
    runs = [
        ("greedy (argmax at every step)", dict(do_sample=False)),
        ("temperature 0.8, top-k 200 (nanoGPT's sample.py)", dict(temperature=0.8, top_k=200)),
        ("temperature 1.0 (the model's own distribution)", dict(temperature=1.0)),
        ("top-p 0.9 (nucleus)", dict(top_p=0.9)),
    ]
    parts = []
    for title, kw in runs:
        out = generate(model, prompt, n, seed=args.seed, **kw)
        text = tok.decode(out[0].tolist())
        parts.append(f"=== {title} ===\n{text}\n")
        print(parts[-1], flush=True)
    m = min(args.block_size - 1, n)  # within one context window the cache reuses everything
    times = {}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        generate(model, prompt, m, seed=0, use_cache=use_cache)
        times[use_cache] = time.perf_counter() - t0
    speed = (
        f"=== KV cache ===\n{m} tokens from a 1-token prompt: {times[True]:.3f}s with the "
        f"cache, {times[False]:.3f}s re-running the whole context at each step "
        f"({times[False] / times[True]:.1f}x)\n"
    )
    print(speed)
    parts.append(speed)
    return "\n".join(parts), times


def plot(hist, out):
    fig, ax = plt.subplots(figsize=(7, 4))
    k = min(25, len(hist["loss"]))
    smooth = np.convolve(hist["loss"], np.ones(k) / k, mode="valid")
    ax.plot(hist["iter"], hist["loss"], lw=0.4, alpha=0.4, color="C0")
    ax.plot(hist["iter"][k - 1 :], smooth, color="C0", label=f"train (batch, mean of {k})")
    ev = hist["evals"]
    ax.plot(
        [e["iter"] for e in ev],
        [e["train"] for e in ev],
        "s-",
        color="C2",
        ms=4,
        label="train (20 batches)",
    )
    ax.plot([e["iter"] for e in ev], [e["val"] for e in ev], "o-", color="C1", label="val")
    ax.axhline(NANOGPT_VAL, color="gray", ls=":", label=f"nanoGPT val {NANOGPT_VAL}")
    ax.set(
        xlabel="iteration",
        ylabel="cross-entropy (nats per character)",
        title="GPT (4 layers, 128 wide) on tinyshakespeare",
        ylim=(1.0, 4.5),
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Chapter 07: train a character-level GPT")
    p.add_argument("--quick", action="store_true", help="a smoke run: 30 iterations")
    p.add_argument("--out", default=str(HERE / "out"))
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--eval-interval", type=int, default=250)
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--final-eval-iters", type=int, default=200)
    p.add_argument("--log-interval", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--sample-tokens", type=int, default=300)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--record",
        action="store_true",
        help="write benchmarks/results/gpt_ch07_shakespeare_<device>.{md,json}",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.eval_interval, args.eval_iters = 30, 15, 2
        args.final_eval_iters = 4
        args.log_interval, args.warmup, args.sample_tokens = 10, 10, 40
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    n = int(0.9 * len(ids))
    splits = {"train": ids[:n], "val": ids[n:]}
    print(
        f"tinyshakespeare: {len(ids):,} characters, vocabulary {tok.vocab_size}; "
        f"train {n:,}, val {len(ids) - n:,}"
    )

    tt.manual_seed(args.seed)
    config = GPTConfig(
        block_size=args.block_size,
        vocab_size=tok.vocab_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dropout=args.dropout,
        bias=False,
    )
    model = GPT(config).to(args.device)
    print(
        f"GPT: {model.get_num_params() / 1e6:.2f}M parameters; {args.iters} iterations "
        f"on {args.device} -> {out}"
    )
    t0 = time.perf_counter()
    hist = train(model, splits, args, args.device)
    seconds = time.perf_counter() - t0
    plot(hist, out)
    final = estimate_loss(
        model, {"val": splits["val"]}, args, args.device, 10**9, n_batches=args.final_eval_iters
    )["val"]
    print(f"validation loss over {args.final_eval_iters} batches: {final:.4f}")
    text_out, gen_times = samples(model, tok, args, args.device)
    (out / "samples.txt").write_text(text_out, encoding="utf-8")
    last = hist["evals"][-1]
    skip = min(10, len(hist["ms"]) // 3)  # the first steps warm caches and allocators
    metrics = {
        "iters": args.iters,
        "val_loss": last["val"],
        "val_loss_final_eval": final,
        "final_eval_iters": args.final_eval_iters,
        "train_loss": last["train"],
        "ms_per_iter_median": float(np.median(hist["ms"][skip:])),
        "seconds_total": seconds,
        "device": args.device,
        "params": model.get_num_params(),
        "evals": hist["evals"],
        "generate_seconds": {"kv_cache": gen_times[True], "no_cache": gen_times[False]},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"done: val loss {last['val']:.4f} after {args.iters} iterations (nanoGPT: "
        f"{NANOGPT_VAL}); median {metrics['ms_per_iter_median']:.1f} ms/iter; "
        f"{seconds:.0f}s in all. Outputs in {out}"
    )
    if args.record:
        record(metrics, args, out)
    return 0


def record(metrics, args, out):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import RESULTS, write_results

    gen = metrics["generate_seconds"]
    rows = [
        {
            "seed": args.seed,
            "iters": metrics["iters"],
            "val loss (20 batches)": metrics["val_loss"],
            f"val loss ({args.final_eval_iters} batches)": metrics["val_loss_final_eval"],
            "train loss (20 batches)": metrics["train_loss"],
            "ms/iter (median)": metrics["ms_per_iter_median"],
            "total s": metrics["seconds_total"],
            "KV cache speed-up (63 tokens)": gen["no_cache"] / gen["kv_cache"],
        }
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    name = f"gpt_ch07_shakespeare_{args.device}"
    write_results(
        "gpt_ch07_shakespeare",
        args.device,
        list(rows[0]),
        rows,
        extra=metrics,
        notes=f"chapters/07_transformer/main.py (seed {args.seed}): nanoGPT's CPU "
        f"recipe; nanoGPT reports val {NANOGPT_VAL}. Step times include the "
        "optimizer and clipping, not evaluation. Load average (1, 5, 15 min) at the end: "
        f"{load} on {os.cpu_count()} CPUs (a load above the CPU count means the machine "
        "was shared and the times are inflated). Threads: OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.",
    )
    shutil.copy(out / "loss.png", RESULTS / f"{name}.png")
    shutil.copy(out / "samples.txt", RESULTS / f"{name}_samples.txt")


if __name__ == "__main__":
    sys.exit(main())
