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

import json
import os

import charlm  # this chapter's helpers (chapters/04_rnn/charlm.py)
import matplotlib.pyplot as plt
import numpy as np

import tinytorch as tt
from tinytorch import optim
from tinytorch.bench import record
from tinytorch.chapter import char_model_args, smooth
from tinytorch.data import char_splits
from tinytorch.data.windows import TBPTTLoader
from tinytorch.models.char_rnn import CharRNN, sample
from tinytorch.train import train
from tinytorch.train.tbptt import TBPTTLoss

# ---- config ------------------------------------------------------------------------------------
p = char_model_args(__file__, "Chapter 04: a character-level RNN on tinyshakespeare")
p.set_defaults(steps=2500, hidden=256, lr=2e-3, eval_every=250, grad_len=100)
p.set_quick(steps=60, hidden=64, eval_every=30, eval_batches=5, grad_len=40)
args = p.parse_args()
out = args.out
tt.manual_seed(args.seed)

# ---- data and model ----------------------------------------------------------------------------
train_ids, val_ids, tok = char_splits("tinyshakespeare")
vocab = tok.vocab_size
print(
    f"tinyshakespeare: {len(train_ids):,} training and {len(val_ids):,} validation "
    f"characters, vocabulary {vocab}"
)
# the baseline with no context at all: each character's frequency in the training text
freq = np.bincount(train_ids, minlength=vocab) + 1.0
unigram = float(-np.log(freq / freq.sum())[val_ids].mean())
print(f"no-context baseline (unigram frequencies): {unigram:.4f} nats/char on validation")
model = CharRNN(vocab, args.embed, args.hidden, num_layers=1, cell="rnn")
n_params = sum(q.numel() for q in model.parameters())
print(
    f"CharRNN(rnn, hidden {args.hidden}): {n_params:,} parameters; "
    f"{args.steps} steps of {args.batch_size}x{args.seq_len} characters, clip {args.clip}"
)
init_model = CharRNN(vocab, args.embed, args.hidden, num_layers=1, cell="rnn")
init_model.load_state_dict(model.state_dict())  # a frozen copy of the starting point

# ---- training: truncated BPTT, the state carried (detached) from window to window ---------------
opt = charlm.ClipAndRecord(
    optim.Adam(model.parameters(), lr=args.lr), model.parameters(), args.clip
)
hist = train(
    model,
    opt,
    TBPTTLoader(train_ids, args.batch_size, args.seq_len),
    args.steps,
    loss_fn=TBPTTLoss(),
    val_data=TBPTTLoader(val_ids, args.batch_size, args.seq_len),
    eval_every=args.eval_every,
    eval_batches=args.eval_batches,
    log_every=args.eval_every,
)
grad_norm = opt.norms  # the total gradient norm of every step, before clipping

# ---- gradient norms through time: at initialization, trained, trained with W_hh x 3 ------------
big = CharRNN(vocab, args.embed, args.hidden, num_layers=1, cell="rnn")
big.load_state_dict(model.state_dict())
big.rnn.weight_hh_l0.data *= 3.0
curves = charlm.grad_norm_curves(
    {"at initialization": init_model, "trained": model, "trained, W_hh x 3": big},
    val_ids,
    args.grad_len,
)
fig, ax = plt.subplots(figsize=(7, 4))
charlm.plot_grad_norms(
    ax, curves, f"RNN: gradient of the loss at step T w.r.t. h_t (T = {args.grad_len})"
)
ax.set_ylabel("||dL_T / dh_t||")
charlm.save(fig, out / "grad_norms.png")

# ---- plots and samples --------------------------------------------------------------------------
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
k = min(50, len(hist.train_loss))
a1.plot(hist.steps[k - 1 :], smooth(hist.train_loss, k), label=f"train (mean of {k})")
a1.plot(hist.val_steps, hist.val_loss, "o-", label="validation")
a1.set_xlabel("step")
a1.set_ylabel("cross-entropy (nats/char)")
a1.set_title("character-level RNN on tinyshakespeare")
a1.legend()
a2.semilogy(hist.steps, grad_norm, lw=0.5)
a2.axhline(args.clip, color="r", ls="--", label=f"clip at {args.clip}")
a2.set_xlabel("step")
a2.set_ylabel("total gradient norm before clipping")
a2.legend()
charlm.save(fig, out / "loss.png")

prompt = np.array(tok.encode("ROMEO:\n"))[None]
samples = {}
for temperature in (0.5, 1.0):
    ids = sample(model, prompt, 300 if not args.quick else 80, temperature=temperature)
    samples[str(temperature)] = tok.decode(ids.numpy()[0])
    print(f"\n--- sample, temperature {temperature} ---\n{samples[str(temperature)]}\n")
(out / "samples.txt").write_text(
    "".join(f"--- temperature {t} ---\n{s}\n\n" for t, s in samples.items()), encoding="utf-8"
)

# ---- results ------------------------------------------------------------------------------------
clipped = int(np.sum(np.array(grad_norm) > args.clip)) if args.clip else 0
ratio = {name: float(c[0] / c[-1]) for name, c in curves.items()}
metrics = {
    "config": {k: v for k, v in vars(args).items() if k != "out"},
    "parameters": n_params,
    "unigram_val_loss": unigram,
    "final_val_loss": hist.val_loss[-1],
    "final_train_loss": float(np.mean(hist.train_loss[-50:])),
    "train_seconds": hist.seconds,
    "val_curve": list(zip(hist.val_steps, hist.val_loss)),
    "steps_clipped": clipped,
    "first_step_norms": grad_norm[:10],
    "blas_threads_env": {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")},
    "grad_norm_first_over_last": ratio,
    "grad_norms": {name: c.tolist() for name, c in curves.items()},
    "samples": samples,
}
(out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
print(
    f"validation loss {hist.val_loss[-1]:.4f} after {args.steps} steps "
    f"({hist.seconds:.0f}s); clipping acted on {clipped} of the {args.steps} steps"
)
for name, r in ratio.items():
    print(f"||dL_T/dh_0|| / ||dL_T/dh_T|| over {args.grad_len} steps, {name}: {r:.3g}")
print(f"wrote {out}/loss.png, grad_norms.png, samples.txt, metrics.json")

if args.record:  # benchmarks/results/ch04_rnn_cpu.{md,json} and the two figures, for the README
    notes = "\n".join(
        [
            f"Character-level RNN (tanh, 1 layer, hidden {args.hidden}, embedding {args.embed}), "
            f"Adam lr {args.lr}, batch {args.batch_size} x {args.seq_len} characters, truncated "
            f"BPTT, clip {args.clip}: {n_params:,} parameters, {hist.seconds:.0f} s of training.",
            f"- final validation loss: {metrics['final_val_loss']:.4f} nats/char "
            f"(train, mean of the last 50 steps: {metrics['final_train_loss']:.4f}); "
            f"no-context baseline (unigram frequencies): {unigram:.4f}",
            f"- clipping acted on {clipped} of the {args.steps} steps "
            f"(gradient norms of the first steps: "
            + ", ".join(f"{v:.2f}" for v in metrics["first_step_norms"])
            + ")",
            f"- thread settings: {metrics['blas_threads_env'] or 'library defaults'}",
        ]
        + [
            f"- ||dL_T/dh_0|| / ||dL_T/dh_T|| over T = {args.grad_len} steps, {k}: {v:.3g}"
            for k, v in ratio.items()
        ]
        + ["", "Sample (temperature 0.5):", "", "```", samples["0.5"], "```"]
    )
    rows = [{"step": s, "val_loss": round(v, 4)} for s, v in zip(hist.val_steps, hist.val_loss)]
    record(
        "ch04_rnn",
        "cpu",
        ["step", "val_loss"],
        rows,
        notes=notes,
        extra=metrics,
        figures=[out / "loss.png", out / "grad_norms.png"],
    )
