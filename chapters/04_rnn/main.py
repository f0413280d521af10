"""Chapter 04: a character-level RNN language model on tinyshakespeare.

    python -m tinytorch.course run 4            # the default run (a few minutes on 2 cores)
    python -m tinytorch.course run 4 --quick    # a smoke run, well under a minute
    python -m tinytorch.course run 4 --record   # also write benchmarks/results/ch04_rnn_cpu.*

Trains Embedding -> RNN (tanh) -> Linear with truncated BPTT (the hidden state carried from
window to window, detached) and gradient clipping, then writes into --out (default
chapters/04_rnn/out/): loss.png (training and validation loss, and the gradient norm that
clipping saw at every step), grad_norms.png (||dL_T/dh_t|| against how far back t is: the
vanishing and exploding gradients), samples.txt and metrics.json.
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
from tinytorch import optim  # noqa: E402
from tinytorch.data import dataset_path  # noqa: E402
from tinytorch.models import char_rnn  # noqa: E402


def load_text() -> str:
    """tinyshakespeare, found by tinytorch.data (TINYTORCH_DATA_DIR, the cache, or download)."""
    return dataset_path("tinyshakespeare").read_text(encoding="utf-8")


def prepare(args):
    text = load_text()
    encode, decode, vocab = char_rnn.char_vocab(text)
    ids = encode(text)
    n = int(0.9 * len(ids))  # first 90% to train on, the last 10% to validate
    return ids[:n], ids[n:], encode, decode, vocab


def train(model, train_ids, val_ids, args, label=""):
    """The TBPTT loop: consecutive windows, the state carried (and detached) between them."""
    opt = optim.Adam(model.parameters(), lr=args.lr)
    hist = {"step": [], "loss": [], "grad_norm": [], "val_step": [], "val_loss": []}
    windows, state, t0 = None, None, time.perf_counter()
    for step in range(1, args.steps + 1):
        try:
            x, y = next(windows)
        except (StopIteration, TypeError):  # start (again) from the top: fresh state
            windows, state = char_rnn.tbptt_batches(train_ids, args.batch_size, args.seq_len), None
            x, y = next(windows)
        loss, state, norm = char_rnn.train_step(model, opt, x, y, state, clip=args.clip)
        hist["step"].append(step)
        hist["loss"].append(loss)
        hist["grad_norm"].append(norm)
        if step % args.eval_every == 0 or step == args.steps:
            val = char_rnn.evaluate(
                model, val_ids, args.batch_size, args.seq_len, max_batches=args.eval_batches
            )
            hist["val_step"].append(step)
            hist["val_loss"].append(val)
            print(
                f"{label}step {step:5d}/{args.steps}  train {np.mean(hist['loss'][-50:]):.4f}"
                f"  val {val:.4f}  |grad| {norm:6.2f}  {time.perf_counter() - t0:6.1f}s",
                flush=True,
            )
    hist["seconds"] = time.perf_counter() - t0
    return hist


def grad_norm_curves(models: dict, val_ids, length: int, batch: int = 16):
    """||dL_T/dh_t|| (top layer) for each model on the same validation windows of `length`."""
    start = np.arange(batch) * (len(val_ids) // batch)
    idx = start[:, None] + np.arange(length + 1)
    x, y = tt.tensor(val_ids[idx[:, :-1]]), tt.tensor(val_ids[idx[:, 1:]])
    return {name: char_rnn.hidden_grad_norms(m, x, y)[-1] for name, m in models.items()}


def plot_grad_norms(curves, path, title):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, norms in curves.items():
        back = np.arange(len(norms))[::-1]  # t = T-1 is 0 steps back
        ax.semilogy(back, norms, label=name)
    ax.set_xlabel("steps back from the loss (T-1-t)")
    ax.set_ylabel("||dL_T / dh_t||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def smooth(values, k=50):
    v = np.asarray(values, dtype=float)
    k = max(1, min(k, len(v)))
    return np.convolve(v, np.ones(k) / k, mode="valid")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a tiny run for CI (well under a minute)")
    p.add_argument("--out", default=str(HERE / "out"), help="output folder")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-batches", type=int, default=None, help="cap on validation windows")
    p.add_argument("--grad-len", type=int, default=100, help="window for the gradient norms")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--record",
        action="store_true",
        help="write benchmarks/results/ch04_rnn_cpu.{md,json} from this run",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.hidden, args.eval_every, args.eval_batches = 60, 64, 30, 5
        args.grad_len = 40
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tt.manual_seed(args.seed)

    train_ids, val_ids, encode, decode, vocab = prepare(args)
    print(
        f"tinyshakespeare: {len(train_ids):,} training and {len(val_ids):,} validation "
        f"characters, vocabulary {vocab}"
    )
    # the baseline with no context at all: each character's frequency in the training text
    freq = np.bincount(train_ids, minlength=vocab) + 1.0
    unigram = float(-np.log(freq / freq.sum())[val_ids].mean())
    print(f"no-context baseline (unigram frequencies): {unigram:.4f} nats/char on validation")
    model = char_rnn.CharRNN(vocab, args.embed, args.hidden, num_layers=1, cell="rnn")
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"CharRNN(rnn, hidden {args.hidden}): {n_params:,} parameters; "
        f"{args.steps} steps of {args.batch_size}x{args.seq_len} characters, clip {args.clip}"
    )

    init_model = char_rnn.CharRNN(vocab, args.embed, args.hidden, num_layers=1, cell="rnn")
    init_model.load_state_dict(model.state_dict())  # a frozen copy of the starting point
    hist = train(model, train_ids, val_ids, args)

    # gradient norms through time: at initialization, trained, and trained with W_hh scaled up
    big = char_rnn.CharRNN(vocab, args.embed, args.hidden, num_layers=1, cell="rnn")
    big.load_state_dict(model.state_dict())
    big.rnn.weight_hh_l0.data *= 3.0
    curves = grad_norm_curves(
        {"at initialization": init_model, "trained": model, "trained, W_hh x 3": big},
        val_ids,
        args.grad_len,
    )
    plot_grad_norms(
        curves,
        out / "grad_norms.png",
        f"RNN: gradient of the loss at step T w.r.t. h_t (T = {args.grad_len})",
    )

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    k = min(50, len(hist["loss"]))
    a1.plot(hist["step"][k - 1 :], smooth(hist["loss"], k), label=f"train (mean of {k})")
    a1.plot(hist["val_step"], hist["val_loss"], "o-", label="validation")
    a1.set_xlabel("step")
    a1.set_ylabel("cross-entropy (nats/char)")
    a1.set_title("character-level RNN on tinyshakespeare")
    a1.legend()
    a2.semilogy(hist["step"], hist["grad_norm"], lw=0.5)
    a2.axhline(args.clip, color="r", ls="--", label=f"clip at {args.clip}")
    a2.set_xlabel("step")
    a2.set_ylabel("total gradient norm before clipping")
    a2.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=120)
    plt.close(fig)

    prompt = encode("ROMEO:\n")[None]
    samples = {}
    for temperature in (0.5, 1.0):
        ids = char_rnn.sample(model, prompt, 300 if not args.quick else 80, temperature=temperature)
        samples[str(temperature)] = decode(ids.numpy()[0])
        print(f"\n--- sample, temperature {temperature} ---\n{samples[str(temperature)]}\n")
    (out / "samples.txt").write_text(
        "".join(f"--- temperature {t} ---\n{s}\n\n" for t, s in samples.items()), encoding="utf-8"
    )

    clipped = int(np.sum(np.array(hist["grad_norm"]) > args.clip)) if args.clip else 0
    ratio = {name: float(c[0] / c[-1]) for name, c in curves.items()}
    metrics = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "parameters": n_params,
        "unigram_val_loss": unigram,
        "final_val_loss": hist["val_loss"][-1],
        "final_train_loss": float(np.mean(hist["loss"][-50:])),
        "train_seconds": hist["seconds"],
        "val_curve": list(zip(hist["val_step"], hist["val_loss"])),
        "steps_clipped": clipped,
        "first_step_norms": hist["grad_norm"][:10],
        "blas_threads_env": {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")},
        "grad_norm_first_over_last": ratio,
        "grad_norms": {name: c.tolist() for name, c in curves.items()},
        "samples": samples,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    print(
        f"validation loss {hist['val_loss'][-1]:.4f} after {args.steps} steps "
        f"({hist['seconds']:.0f}s); clipping acted on {clipped} of the {args.steps} steps"
    )
    for name, r in ratio.items():
        print(f"||dL_T/dh_0|| / ||dL_T/dh_T|| over {args.grad_len} steps, {name}: {r:.3g}")
    print(f"wrote {out}/loss.png, grad_norms.png, samples.txt, metrics.json")
    if args.record:
        record(metrics, hist, args, out)


def record(metrics, hist, args, out):
    """benchmarks/results/ch04_rnn_cpu.{md,json} and the two figures, for the README."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import RESULTS, write_results

    for name in ("loss", "grad_norms"):
        shutil.copyfile(out / f"{name}.png", RESULTS / f"ch04_rnn_{name}.png")

    rows = [
        {"step": s, "val_loss": round(v, 4)} for s, v in zip(hist["val_step"], hist["val_loss"])
    ]
    ratio = metrics["grad_norm_first_over_last"]
    notes = "\n".join(
        [
            f"Character-level RNN (tanh, 1 layer, hidden {args.hidden}, embedding {args.embed}), "
            f"Adam lr {args.lr}, batch {args.batch_size} x {args.seq_len} characters, truncated "
            f"BPTT, clip {args.clip}: {metrics['parameters']:,} parameters, "
            f"{metrics['train_seconds']:.0f} s of training.",
            f"- final validation loss: {metrics['final_val_loss']:.4f} nats/char "
            f"(train, mean of the last 50 steps: {metrics['final_train_loss']:.4f}); "
            f"no-context baseline (unigram frequencies): {metrics['unigram_val_loss']:.4f}",
            f"- clipping acted on {metrics['steps_clipped']} of the {args.steps} steps "
            f"(gradient norms of the first steps: "
            + ", ".join(f"{v:.2f}" for v in metrics["first_step_norms"])
            + ")",
            f"- thread settings: {metrics['blas_threads_env'] or 'library defaults'}",
        ]
        + [
            f"- ||dL_T/dh_0|| / ||dL_T/dh_T|| over T = {args.grad_len} steps, {k}: {v:.3g}"
            for k, v in ratio.items()
        ]
        + ["", "Sample (temperature 0.5):", "", "```", metrics["samples"]["0.5"], "```"]
    )
    write_results("ch04_rnn", "cpu", ["step", "val_loss"], rows, notes=notes, extra=metrics)


if __name__ == "__main__":
    main()
