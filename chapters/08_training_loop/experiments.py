"""Chapter 08's experiments, each a few Trainer runs of a small GPT and one figure.

- lr_sweep: final validation loss against the peak learning rate (log scale);
- warmup: the same high learning rate with and without warmup;
- overfitting: train vs validation loss on a small subset, without and with dropout/decay;
- batch_size: effective batches of 1x, 2x, 4x a micro-batch through gradient accumulation;
- search: a 3x3 grid against 9 random trials (and Optuna's TPE, when installed) on one
  budget, with the median rule pruning trials on their evaluation curves;
- resume: a run stopped halfway and resumed in a fresh Trainer ends bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
from shakespeare import batch_fn, fixed_batches, make_gpt

import tinytorch as tt
from tinytorch.chapter import smooth
from tinytorch.optim import AdamW
from tinytorch.optim.groups import decay_param_groups
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import (
    LambdaCallback,
    LogUniform,
    MedianPruner,
    Trainer,
    TrainingDiverged,
    Uniform,
    evaluate,
    gpt_loss,
    grid_search,
    random_search,
)


@dataclass
class Small:
    """The experiments' GPT: 2 layers, 64 wide, 32 characters of context, batches of 16."""

    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    block_size: int = 32
    batch_size: int = 16
    eval_batches: int = 8
    steps: dict = field(default_factory=dict)  # per experiment


def run(
    corpus,
    s: Small,
    seed,
    steps,
    lr,
    *,
    warmup=None,
    dropout=0.0,
    wd=0.0,
    k=1,
    train_ids=None,
    eval_every=0,
    run_dir=None,
    callbacks=(),
    train_metric=False,
):
    """One small-GPT Trainer run; returns the Trainer (its history and evals)."""
    tt.manual_seed(seed)
    model = make_gpt(corpus.vocab_size, s.n_layer, s.n_head, s.n_embd, s.block_size, dropout)
    opt = AdamW(decay_param_groups(model, wd), lr=lr, betas=(0.9, 0.99))
    warm = max(1, steps // 10) if warmup is None else warmup
    sched = WarmupCosineLR(opt, warm, steps)
    ids = corpus.train if train_ids is None else train_ids
    val = fixed_batches(corpus.val, s.eval_batches, s.batch_size, s.block_size, seed)
    metrics = {}
    if train_metric:  # the loss on (fixed) training batches, to compare with val
        tr = fixed_batches(ids, s.eval_batches, s.batch_size, s.block_size, seed)
        metrics["train_loss"] = lambda m, _: evaluate(m, tr, gpt_loss)
    t = Trainer(
        model,
        opt,
        batch_fn=batch_fn(ids, s.batch_size, s.block_size, seed),
        loss_fn=gpt_loss,
        max_steps=steps,
        accumulation_steps=k,
        clip_grad_norm=1.0,
        scheduler=sched,
        val_data=val,
        eval_every=eval_every,
        metrics=metrics,
        run_dir=run_dir,
        callbacks=callbacks,
        progress="off",
        tensorboard=False,
    )
    try:
        t.fit()
    except TrainingDiverged as e:
        print(f"  diverged: {e}")
    return t


def _final(t):
    return t.evals[-1]["val_loss"] if t.evals else float("nan")


def lr_sweep(corpus, s, seed, out, lrs, steps):
    finals = []
    for lr in lrs:
        finals.append(_final(run(corpus, s, seed, steps, lr)))
        print(f"  lr {lr:.1e}: val loss {finals[-1]:.4f}", flush=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, finals, "o-")
    ax.set(
        xscale="log",
        xlabel="peak learning rate (AdamW, warmup + cosine)",
        ylabel=f"val loss after {steps} steps",
        title="learning-rate sweep",
    )
    fig.tight_layout()
    fig.savefig(out / "lr_sweep.png", dpi=110)
    plt.close(fig)
    best = int(np.nanargmin(finals))
    return {"lrs": list(lrs), "val_loss": finals, "best_lr": lrs[best]}


def warmup(corpus, s, seed, out, lr, steps):
    runs = {
        w: run(corpus, s, seed, steps, lr, warmup=w, eval_every=max(1, steps // 5))
        for w in (0, steps // 10)
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (w, t) in enumerate(runs.items()):
        k = max(1, min(10, len(t.history.train_loss) // 5))
        ax.plot(
            t.history.steps[k - 1 :],
            smooth(t.history.train_loss, k),
            color=f"C{i}",
            label=f"warmup {w} steps: train",
        )
        ax.plot(t.history.val_steps, t.history.val_loss, "o--", color=f"C{i}", label="val")
    ax.set(xlabel="step", ylabel="loss", title=f"warmup at peak lr {lr:g}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "warmup.png", dpi=110)
    plt.close(fig)
    return {f"warmup_{w}": _final(t) for w, t in runs.items()}


def overfitting(corpus, s, seed, out, steps, subset=5_000):
    """A small training subset (a few epochs' worth of steps): the model memorizes it."""
    ids = corpus.train[:subset]
    configs = {
        "no regularization": (0.0, 0.0),
        "dropout 0.2": (0.2, 0.0),
        "dropout 0.2 + decay 0.5": (0.2, 0.5),
    }
    fig, axes = plt.subplots(1, len(configs), figsize=(13, 3.8), sharey=True)
    result = {}
    for ax, (name, (p, wd)) in zip(axes, configs.items()):
        t = run(
            corpus,
            s,
            seed,
            steps,
            3e-3,
            dropout=p,
            wd=wd,
            train_ids=ids,
            eval_every=max(1, steps // 10),
            train_metric=True,
        )
        steps_e = [e["step"] for e in t.evals]
        ax.plot(steps_e, [e["train_loss"] for e in t.evals], "o-", label="train (subset)")
        ax.plot(steps_e, [e["val_loss"] for e in t.evals], "s-", label="val")
        ax.set(title=name, xlabel="step")
        gap = t.evals[-1]["val_loss"] - t.evals[-1]["train_loss"]
        result[name] = {
            "train": t.evals[-1]["train_loss"],
            "val": t.evals[-1]["val_loss"],
            "gap": gap,
            "best_val": min(e["val_loss"] for e in t.evals),
        }
        print(
            f"  {name}: train {result[name]['train']:.3f} val {result[name]['val']:.3f}", flush=True
        )
    axes[0].set_ylabel("loss")
    axes[0].legend()
    fig.suptitle(f"overfitting {subset:,} characters")
    fig.tight_layout()
    fig.savefig(out / "overfitting.png", dpi=110)
    plt.close(fig)
    return result


def batch_size(corpus, s, seed, out, steps, ks=(1, 2, 4)):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    result = {}
    for i, k in enumerate(ks):
        t = run(corpus, s, seed, steps, 3e-3, k=k, eval_every=max(1, steps // 5))
        ev = t.evals
        label = f"{k} x {s.batch_size} = {k * s.batch_size}"
        a1.plot(
            [e["step"] for e in ev], [e["val_loss"] for e in ev], "o-", color=f"C{i}", label=label
        )
        a2.plot(
            [e["step"] * k * s.batch_size for e in ev],
            [e["val_loss"] for e in ev],
            "o-",
            color=f"C{i}",
            label=label,
        )
        result[f"batch_{k * s.batch_size}"] = _final(t)
    a1.set(xlabel="optimizer step", ylabel="val loss", title="same steps: bigger batch wins")
    a2.set(xlabel="sequences seen", xscale="log", title="same data: smaller batch wins")
    a1.legend(title="micro-batches x size")
    fig.tight_layout()
    fig.savefig(out / "batch_size.png", dpi=110)
    plt.close(fig)
    return result


def search(corpus, s, seed, out, steps, n_side=3, use_optuna=True):
    """Grid n_side x n_side against n_side**2 random trials (and TPE) over lr and dropout."""
    space = {"lr": LogUniform(3e-4, 3e-2), "dropout": Uniform(0.0, 0.3)}

    def objective(trial):
        c = trial.config
        t = run(
            corpus,
            s,
            seed,
            steps,
            c["lr"],
            dropout=c["dropout"],
            eval_every=max(1, steps // 4),
            run_dir=trial.run_dir,
            callbacks=[trial.callback()],
        )
        return _final(t)

    n = n_side * n_side
    results = {
        "grid": grid_search(
            objective, space, out / "grid", points=n_side, pruner=MedianPruner(n_startup_trials=3)
        ),
        "random": random_search(
            objective, space, n, out / "random", seed=seed, pruner=MedianPruner(n_startup_trials=3)
        ),
    }
    if use_optuna:
        try:
            from tinytorch.train import optuna_search

            results["optuna (TPE)"] = optuna_search(
                objective, space, n, out / "optuna", seed=seed, n_startup_trials=3
            )
        except ImportError as e:
            print(f"  (skipping Optuna: {e})")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    summary = {}
    for i, (name, rows) in enumerate(results.items()):
        vals = [r["value"] if math.isfinite(r["value"]) else np.inf for r in rows]
        done = [v if r["status"] == "complete" else np.inf for v, r in zip(vals, rows)]
        a1.plot(
            range(1, len(done) + 1), np.minimum.accumulate(done), "o-", color=f"C{i}", label=name
        )
        lrs = [r["lr"] for r in rows]
        a2.scatter(lrs, vals, color=f"C{i}", label=name, alpha=0.7)
        best = min(rows, key=lambda r: r["value"] if r["status"] == "complete" else np.inf)
        summary[name] = {
            "best": best["value"],
            "best_lr": best["lr"],
            "pruned": sum(r["status"] == "pruned" for r in rows),
        }
        print(
            f"  {name}: best val {best['value']:.4f} (lr {best['lr']:.2e}), "
            f"{summary[name]['pruned']} of {len(rows)} trials pruned",
            flush=True,
        )
    a1.set(xlabel="trial", ylabel="best val loss so far", title=f"{n} trials each")
    a2.set(
        xscale="log", xlabel="lr", ylabel="val loss (pruned: at the prune)", title="lr values tried"
    )
    a1.legend()
    fig.tight_layout()
    fig.savefig(out / "search.png", dpi=110)
    plt.close(fig)
    return summary


def resume(corpus, s, seed, out, steps):
    """Stop halfway (a callback), resume in a new Trainer and model, compare bit for bit."""
    full = run(corpus, s, seed, steps, 3e-3, dropout=0.1, run_dir=out / "full")
    half = steps // 2
    stop = LambdaCallback(on_step_end=lambda t, logs: setattr(t, "should_stop", t.step == half))
    run(corpus, s, seed, steps, 3e-3, dropout=0.1, run_dir=out / "stopped", callbacks=[stop])
    tt.manual_seed(seed + 1)  # the resumed run must not depend on the process's state
    model = make_gpt(corpus.vocab_size, s.n_layer, s.n_head, s.n_embd, s.block_size, 0.1)
    opt = AdamW(decay_param_groups(model, 0.0), lr=3e-3, betas=(0.9, 0.99))
    sched = WarmupCosineLR(opt, max(1, steps // 10), steps)
    t = Trainer(
        model,
        opt,
        batch_fn=batch_fn(corpus.train, s.batch_size, s.block_size, seed),
        loss_fn=gpt_loss,
        max_steps=steps,
        clip_grad_norm=1.0,
        scheduler=sched,
        val_data=fixed_batches(corpus.val, s.eval_batches, s.batch_size, s.block_size, seed),
        run_dir=out / "stopped",
        progress="off",
        tensorboard=False,
    )
    t.fit(resume=True)
    a, b = full.model.state_dict(), t.model.state_dict()
    same = all(np.array_equal(a[k].data, b[k].data) for k in a)
    diff = max(float(np.abs(a[k].data - b[k].data).max()) for k in a)
    print(
        f"  stopped at step {half}, resumed to {steps}: parameters "
        f"{'bit-identical' if same else 'DIFFERENT'} to the uninterrupted run "
        f"(max |difference| {diff:g})",
        flush=True,
    )
    return {"identical": same, "max_abs_diff": diff, "stopped_at": half, "steps": steps}
