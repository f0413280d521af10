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

import functools
import json
import os
import statistics
import time

import matplotlib.pyplot as plt
import numpy as np

import tinytorch as tt
from tinytorch.bench import record, time_cpu
from tinytorch.chapter import gpt_recipe_args, smooth
from tinytorch.data import char_splits
from tinytorch.data.windows import random_windows
from tinytorch.generate import generate
from tinytorch.models import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import gpt_loss, train_step

NANOGPT_VAL = 1.88  # nanoGPT's README, this recipe on a CPU


def get_batch(ids, rng, args, device):
    """nanoGPT's get_batch: batch_size random windows; targets are the inputs shifted by one."""
    return random_windows(ids, rng, args.batch_size, args.block_size, device)


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
        batch = get_batch(splits["train"], rng, args, device)
        # the GPT computes its own loss (nanoGPT's forward(idx, targets) -> (logits, loss));
        # train_step's loss.item() also waits for the GPU, so the time below is the step's
        lossf = train_step(model, opt, batch, loss_fn=gpt_loss, clip_grad_norm=args.grad_clip)
        sched.step()
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
    # One generation is a few hundred ms: time each way after a warm-up call, several times,
    # alternating, and compare medians (a single cold timing swings by 50x from run to run).
    repeats = 3 if args.quick else 7
    times = {True: [], False: []}
    for use_cache in (True, False):
        generate(model, prompt, m, seed=0, use_cache=use_cache)  # warm-up
    for _ in range(repeats):
        for use_cache in (True, False):
            run = functools.partial(generate, model, prompt, m, seed=0, use_cache=use_cache)
            times[use_cache].append(time_cpu(run, warmup=0, repeat=1))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = sorted(b / a for a, b in zip(times[True], times[False]))
    speed = (
        f"=== KV cache ===\n{m} tokens from a 1-token prompt, median of {repeats} after a "
        f"warm-up: {med[True]:.3f}s with the cache, {med[False]:.3f}s re-running the whole "
        f"context at each step: {med[False] / med[True]:.1f}x (per repeat "
        f"{ratios[0]:.1f}x to {ratios[-1]:.1f}x)\n"
    )
    print(speed)
    parts.append(speed)
    return "\n".join(parts), {"median": med, "ratios": ratios, "tokens": m}


def plot(hist, out):
    fig, ax = plt.subplots(figsize=(7, 4))
    k = min(25, len(hist["loss"]))
    ax.plot(hist["iter"], hist["loss"], lw=0.4, alpha=0.4, color="C0")
    ax.plot(
        hist["iter"][k - 1 :], smooth(hist["loss"], k), color="C0", label=f"train (mean of {k})"
    )
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


def main() -> int:
    p = gpt_recipe_args(__file__, "Chapter 07: train a character-level GPT")
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
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--sample-tokens", type=int, default=300)
    p.set_quick(  # 30 iterations
        iters=30, eval_interval=15, eval_iters=2, final_eval_iters=4, log_interval=10,
        warmup=10, sample_tokens=40,
    )  # fmt: skip
    args = p.parse_args()
    out = args.out

    train_ids, val_ids, tok = char_splits("tinyshakespeare")
    splits = {"train": train_ids, "val": val_ids}
    print(
        f"tinyshakespeare: {len(train_ids) + len(val_ids):,} characters, vocabulary "
        f"{tok.vocab_size}; train {len(train_ids):,}, val {len(val_ids):,}"
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
        "generate_seconds": {
            "tokens": gen_times["tokens"],
            "kv_cache_median": gen_times["median"][True],
            "no_cache_median": gen_times["median"][False],
            "speedup_per_repeat": gen_times["ratios"],
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"done: val loss {last['val']:.4f} after {args.iters} iterations (nanoGPT: "
        f"{NANOGPT_VAL}); median {metrics['ms_per_iter_median']:.1f} ms/iter; "
        f"{seconds:.0f}s in all. Outputs in {out}"
    )
    if args.record:
        record_results(metrics, args, out)
    return 0


def record_results(metrics, args, out):
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
            f"KV cache speed-up ({gen['tokens']} tokens, median)": gen["no_cache_median"]
            / gen["kv_cache_median"],
        }
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    record(
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
        figures=[out / "loss.png", out / "samples.txt"],
    )


if __name__ == "__main__":
    raise SystemExit(main())
