"""Chapter 05: RNN vs LSTM vs GRU character models on tinyshakespeare, with the same budget.

    python -m tinytorch.course run 5            # the default run (a few minutes on 2 cores)
    python -m tinytorch.course run 5 --quick    # a smoke run, well under a minute
    python -m tinytorch.course run 5 --record   # also write benchmarks/results/ch05_lstm_cpu.*

The three models share everything but the recurrent cell: embedding, hidden size, one layer,
optimizer, learning rate, clipping, the very same training windows in the same order, and the
number of steps. Writes into --out (default chapters/05_lstm/out/): val_loss.png (the three
validation curves), grad_norms.png (||dL_T/dh_t|| against how far back t is, at
initialization and after training), samples.txt and metrics.json.
"""

from __future__ import annotations

import json
import os

import matplotlib.pyplot as plt
import numpy as np

import tinytorch as tt
from tinytorch import optim
from tinytorch.bench import record
from tinytorch.chapter import char_model_args
from tinytorch.data import char_splits
from tinytorch.data.windows import TBPTTLoader, spread_windows
from tinytorch.models.char_rnn import CharRNN, sample
from tinytorch.train import train
from tinytorch.train.tbptt import TBPTTLoss

CELLS = ("rnn", "lstm", "gru")

# ---- config ------------------------------------------------------------------------------------
p = char_model_args(__file__, "Chapter 05: RNN vs LSTM vs GRU on tinyshakespeare")
p.set_defaults(steps=1500, hidden=192, lr=3e-3, eval_every=150, grad_len=200)
p.set_quick(steps=40, hidden=48, eval_every=20, eval_batches=4, grad_len=40)
args = p.parse_args()
out = args.out

# ---- data: the first 90% of tinyshakespeare trains, the last 10% validates ----------------------
train_ids, val_ids, tok = char_splits("tinyshakespeare")
print(
    f"tinyshakespeare: {len(train_ids):,} training and {len(val_ids):,} validation "
    f"characters; {args.steps} steps of {args.batch_size}x{args.seq_len} for each model"
)

# ---- the three models, the same budget ----------------------------------------------------------
models, inits, hists, n_params = {}, {}, {}, {}
for cell in CELLS:
    tt.manual_seed(args.seed)  # each model starts from its own, reproducible, draw
    m = CharRNN(tok.vocab_size, args.embed, args.hidden, num_layers=1, cell=cell)
    inits[cell] = CharRNN(tok.vocab_size, args.embed, args.hidden, num_layers=1, cell=cell)
    inits[cell].load_state_dict(m.state_dict())
    n_params[cell] = sum(q.numel() for q in m.parameters())
    print(f"\n== {cell.upper()}: hidden {args.hidden}, {n_params[cell]:,} parameters ==")
    hists[cell] = train(
        m,
        optim.Adam(m.parameters(), lr=args.lr),
        TBPTTLoader(train_ids, args.batch_size, args.seq_len),
        args.steps,
        loss_fn=TBPTTLoss(),
        val_data=TBPTTLoader(val_ids, args.batch_size, args.seq_len),
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        clip_grad_norm=args.clip or None,
        log_every=args.eval_every,
        print_fn=lambda line, cell=cell: print(f"{cell:>4} {line}", flush=True),
    )
    models[cell] = m

fig, ax = plt.subplots(figsize=(7, 4.5))
for cell in CELLS:
    h = hists[cell]
    ax.plot(
        h.val_steps,
        h.val_loss,
        "o-",
        ms=3,
        label=f"{cell.upper()} ({n_params[cell] / 1e3:.0f}k params, "
        f"{h.seconds:.0f}s): {h.val_loss[-1]:.3f}",
    )
ax.set_xlabel("step")
ax.set_ylabel("validation cross-entropy (nats/char)")
ax.set_title(f"same budget: hidden {args.hidden}, {args.steps} steps, same batches")
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(out / "val_loss.png", dpi=120)
plt.close(fig)

# ---- how far back does the loss still reach? the same validation windows for every model -------
x, y = spread_windows(val_ids, 16, args.grad_len)
at_init = {c.upper(): inits[c].hidden_grad_norms(x, y)[-1] for c in CELLS}
trained = {c.upper(): models[c].hidden_grad_norms(x, y)[-1] for c in CELLS}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
for ax, curves, title in (
    (axes[0], at_init, "at initialization"),
    (axes[1], trained, "after training"),
):
    for name, norms in curves.items():
        ax.semilogy(np.arange(len(norms))[::-1], norms, label=name)
    ax.set_title(f"||dL_T/dh_t||, T = {args.grad_len}, {title}")
    ax.set_xlabel("steps back from the loss (T-1-t)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
axes[0].set_ylabel("gradient norm")
fig.tight_layout()
fig.savefig(out / "grad_norms.png", dpi=120)
plt.close(fig)

# ---- samples -------------------------------------------------------------------------------------
prompt = np.array(tok.encode("ROMEO:\n"))[None]
samples = {}
for cell in CELLS:
    tt.manual_seed(args.seed)
    ids = sample(models[cell], prompt, 300 if not args.quick else 80, temperature=0.7)
    samples[cell] = tok.decode(ids.numpy()[0])
    print(f"\n--- {cell.upper()} sample (temperature 0.7) ---\n{samples[cell]}")
(out / "samples.txt").write_text(
    "".join(f"--- {c.upper()} (temperature 0.7) ---\n{s}\n\n" for c, s in samples.items()),
    encoding="utf-8",
)


# ---- results ------------------------------------------------------------------------------------
def reach(curves):  # gradient left after 50 and after grad_len-1 steps, relative to step 0
    k = min(50, args.grad_len - 1)
    return {
        n: {"50_back": float(c[-1 - k] / c[-1]), "all_back": float(c[0] / c[-1])}
        for n, c in curves.items()
    }


metrics = {
    "config": {k: v for k, v in vars(args).items() if k != "out"},
    "models": {
        c: {
            "parameters": n_params[c],
            "seconds": hists[c].seconds,
            "final_val_loss": hists[c].val_loss[-1],
            "final_train_loss": float(np.mean(hists[c].train_loss[-50:])),
            "val_curve": list(zip(hists[c].val_steps, hists[c].val_loss)),
        }
        for c in CELLS
    },
    "grad_norm_ratio_at_init": reach(at_init),
    "grad_norm_ratio_trained": reach(trained),
    "grad_norms_trained": {n: c.tolist() for n, c in trained.items()},
    "grad_norms_at_init": {n: c.tolist() for n, c in at_init.items()},
    "samples": samples,
}
(out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
print()
for c in CELLS:
    r0, r1 = (
        metrics["grad_norm_ratio_at_init"][c.upper()],
        metrics["grad_norm_ratio_trained"][c.upper()],
    )
    print(
        f"{c.upper():>4}: val {hists[c].val_loss[-1]:.4f}  ({hists[c].seconds:.0f}s)"
        f"  ||dL_T/dh_(T-{args.grad_len})|| / ||dL_T/dh_T||: at init {r0['all_back']:.2g},"
        f" trained {r1['all_back']:.2g}"
    )
print(f"wrote {out}/val_loss.png, grad_norms.png, samples.txt, metrics.json")

if args.record:  # benchmarks/results/ch05_lstm_cpu.{md,json} and the two figures, for the README
    rows, ratio = [], metrics["grad_norm_ratio_trained"]
    for c in CELLS:
        m = metrics["models"][c]
        rows.append(
            {
                "model": c.upper(),
                "parameters": m["parameters"],
                "val_loss": round(m["final_val_loss"], 4),
                "train_loss": round(m["final_train_loss"], 4),
                "seconds": round(m["seconds"], 1),
                "grad_ratio_50_back": f"{ratio[c.upper()]['50_back']:.2g}",
                f"grad_ratio_{args.grad_len - 1}_back": f"{ratio[c.upper()]['all_back']:.2g}",
            }
        )
    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}
    notes = (
        f"Same budget for the three: embedding {args.embed}, hidden {args.hidden}, 1 layer, "
        f"Adam lr {args.lr}, clip {args.clip}, {args.steps} steps of {args.batch_size} x "
        f"{args.seq_len} characters (the same windows in the same order), truncated BPTT. "
        f"val_loss: on the last 10% of tinyshakespeare after the last step (nats/char). "
        f"grad_ratio_k_back: ||dL_T/dh_(T-1-k)|| / ||dL_T/dh_(T-1)|| for the trained model "
        f"on {args.grad_len}-character validation windows. Thread settings: "
        f"{threads or 'defaults'}.\n\n"
        + "\n".join(
            f"{c.upper()} sample (temperature 0.7):\n\n```\n{s}\n```\n" for c, s in samples.items()
        )
    )
    record(
        "ch05_lstm",
        "cpu",
        list(rows[0]),
        rows,
        notes=notes,
        extra=metrics,
        figures=[out / "val_loss.png", out / "grad_norms.png"],
    )
