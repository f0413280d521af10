"""Chapter 06: attention learns where to look - reversing a sequence of digits.

    python -m tinytorch.course run 6            # the default run (well under a minute on 2 cores)
    python -m tinytorch.course run 6 --quick    # a smoke run, a few seconds
    python -m tinytorch.course run 6 --record   # also write benchmarks/results/gpt_ch06_*

The task: read 8 random digits and output them reversed. Each output position i must copy the
digit at position 7 - i, a pure "where to look" problem that one attention layer solves: the
query of position i must match the key of position 7 - i. The task and the model (an embedding
plus learned positional embeddings, one nn.MultiheadAttention with 2 heads, a residual MLP and
a linear head) are in reverser.py, next to this file. Written into --out (default
chapters/06_attention/out/):

- heads.png: the attention weights of each head on test sequences (the anti-diagonal appears
  as the model learns);
- during_training.png: head-averaged weights at several points of training;
- positional_encoding.png: the sinusoidal table of "Attention Is All You Need" and the
  dot products between its rows (nearby positions look alike);
- masks.png: a causal mask and a padding mask, as the boolean matrices attention sees;
- loss.png, predictions.txt, metrics.json.
"""

from __future__ import annotations

import json
import time

import matplotlib.pyplot as plt
import numpy as np
from reverser import Reverser, accuracy, batch, loss_fn

import tinytorch as tt
from tinytorch import nn, optim
from tinytorch.bench import record
from tinytorch.chapter import chapter_args
from tinytorch.nn.functional_attention import causal_mask
from tinytorch.train import train_step


def train(args):
    rng = np.random.default_rng(args.seed)
    tt.manual_seed(args.seed)
    model = Reverser(args.seq_len)
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    probe, _ = batch(np.random.default_rng(args.seed + 1), 1, args.seq_len)
    hist = {"step": [], "loss": [], "acc_step": [], "token_acc": [], "snapshots": []}
    snap_at = sorted({0, args.steps // 8, args.steps // 6, args.steps // 5, args.steps})
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step in snap_at:  # what the attention looks like at this point of training
            with tt.no_grad():
                model.eval()
                w = model(probe)[1].numpy()[0].mean(0)
                model.train()
            hist["snapshots"].append((step, w))
        if step == args.steps:
            break
        loss = train_step(model, opt, batch(rng, args.batch_size, args.seq_len), loss_fn)
        hist["step"].append(step)
        hist["loss"].append(loss)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            tok, seq = accuracy(model, rng, args.seq_len)
            hist["acc_step"].append(step + 1)
            hist["token_acc"].append(tok)
            print(
                f"step {step + 1:5d}/{args.steps}  loss {np.mean(hist['loss'][-50:]):.4f}  "
                f"token acc {tok:.3f}  sequence acc {seq:.3f}  "
                f"{time.perf_counter() - t0:5.1f}s",
                flush=True,
            )
    hist["seconds"] = time.perf_counter() - t0
    return model, hist


def plot_heads(model, args, out):
    rng = np.random.default_rng(args.seed + 2)
    x, _ = batch(rng, 3, args.seq_len)
    model.eval()
    with tt.no_grad():
        logits, w = model(x)
    w, digits, pred = w.numpy(), x.numpy(), logits.argmax(-1).numpy()
    heads = w.shape[1]
    fig, axes = plt.subplots(heads, 3, figsize=(10, 3.2 * heads), squeeze=False)
    for e in range(3):
        for h in range(heads):
            ax = axes[h, e]
            ax.imshow(w[e, h], cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(args.seq_len), [str(d) for d in digits[e]])
            ax.set_yticks(range(args.seq_len), [str(d) for d in pred[e]])
            ax.set_xlabel("key: input digit")
            ax.set_ylabel("query: output digit")
            ax.set_title(f"example {e + 1}, head {h + 1}", fontsize=9)
    fig.suptitle("Attention weights after training (rows sum to 1)")
    fig.tight_layout()
    fig.savefig(out / "heads.png", dpi=100)
    plt.close(fig)
    lines = [
        f"input {''.join(map(str, a))}  ->  predicted {''.join(map(str, b))}"
        for a, b in zip(digits, pred)
    ]
    (out / "predictions.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot_training(hist, out):
    snaps = hist["snapshots"]
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.2 * len(snaps), 3.2))
    for ax, (step, w) in zip(np.atleast_1d(axes), snaps):
        ax.imshow(w, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"step {step}", fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.suptitle("Head-averaged attention on one sequence during training")
    fig.tight_layout()
    fig.savefig(out / "during_training.png", dpi=100)
    plt.close(fig)

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(hist["step"], hist["loss"], lw=0.6)
    a.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="training loss")
    b.plot(hist["acc_step"], hist["token_acc"], "o-")
    b.set(xlabel="step", ylabel="accuracy", title="held-out digit accuracy", ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


def plot_encodings_and_masks(out):
    pe = nn.sinusoidal_positional_encoding(64, 64, dtype="float64").numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    im = a.imshow(pe, cmap="RdBu", aspect="auto")
    a.set(
        xlabel="dimension (sin on even, cos on odd)",
        ylabel="position",
        title="sinusoidal positional encoding",
    )
    fig.colorbar(im, ax=a)
    im = b.imshow(pe @ pe.T, cmap="viridis")
    b.set(xlabel="position", ylabel="position", title="PE[i] . PE[j]: depends on |i - j|")
    fig.colorbar(im, ax=b)
    fig.tight_layout()
    fig.savefig(out / "positional_encoding.png", dpi=100)
    plt.close(fig)

    T = 6
    causal = causal_mask(T).numpy()  # the cached mask is_causal=True uses
    padding = np.ones((T, T), dtype=bool)
    padding[:, 4:] = False  # the last two keys are padding
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
    for ax, m, title in zip(
        axes,
        [causal, padding, causal & padding],
        ["causal: key j <= query i", "padding: keys 4, 5 are pads", "both (logical and)"],
    ):
        ax.imshow(m, cmap="Greens", vmin=0, vmax=1)
        ax.set(title=title, xlabel="key", ylabel="query")
    fig.suptitle("Masks as F.scaled_dot_product_attention reads them: True (green) = may attend")
    fig.tight_layout()
    fig.savefig(out / "masks.png", dpi=100)
    plt.close(fig)


def main() -> int:
    p = chapter_args(__file__, "Chapter 06: attention learns to reverse digits", seed=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seq-len", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.set_quick(steps=200, eval_every=50)
    args = p.parse_args()
    out = args.out
    print(
        f"chapter 06: reversing {args.seq_len} digits with one attention layer, "
        f"{args.steps} steps -> {out}"
    )
    model, hist = train(args)
    plot_heads(model, args, out)
    plot_training(hist, out)
    plot_encodings_and_masks(out)
    tok, seq = accuracy(model, np.random.default_rng(args.seed + 3), args.seq_len, n=5000)
    metrics = {
        "steps": args.steps,
        "token_accuracy": tok,
        "sequence_accuracy": seq,
        "final_loss": float(np.mean(hist["loss"][-50:])),
        "seconds": hist["seconds"],
        "first_step_token_acc_99": next(
            (s for s, a in zip(hist["acc_step"], hist["token_acc"]) if a >= 0.99), None
        ),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"held-out accuracy: {tok:.4f} per digit, {seq:.4f} per sequence "
        f"({hist['seconds']:.1f}s); figures in {out}"
    )
    if args.record:
        rows = [
            {
                "steps": metrics["steps"],
                "token accuracy": metrics["token_accuracy"],
                "sequence accuracy": metrics["sequence_accuracy"],
                "first eval step with token accuracy >= 0.99": metrics["first_step_token_acc_99"],
                "final train loss": metrics["final_loss"],
                "seconds": metrics["seconds"],
            }
        ]
        figures = ["heads", "during_training", "loss", "positional_encoding", "masks"]
        record(
            "gpt_ch06_attention",
            "cpu",
            list(rows[0]),
            rows,
            extra=metrics,
            notes="chapters/06_attention/main.py: one MultiheadAttention layer (2 heads, "
            f"d_model 32) reversing {args.seq_len} digits, seed {args.seed}; "
            "accuracy on 5000 fresh sequences.",
            figures=[out / f"{name}.png" for name in figures],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
