"""Chapter 03: from counting to neural language models, on 32k names.

    python -m tinytorch.course run 3            # the default run (about a minute on 2 cores)
    python -m tinytorch.course run 3 --quick    # a smoke run, well under a minute
    python -m tinytorch.course run 3 --record   # also write benchmarks/results/ch03_*

Fits a counting bigram model, a neural bigram (a linear layer on one-hot characters) and
Bengio et al.'s MLP language model (context 3, embedding 10, hidden 200) on the makemore
names (80/10/10 train/val/test), then writes into --out (default chapters/03_language_model/
out/): loss.png (the learning curves against the count model and the published anchors),
bigram_counts.png (the count table), embeddings.png (the learned character embeddings,
projected to 2-D), samples.txt and results.json.
"""

from __future__ import annotations

import argparse
import json
import math
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
import makemore as mm  # noqa: E402 - this chapter's models (chapters/03_language_model/)
import matplotlib.pyplot as plt  # noqa: E402

import tinytorch as tt  # noqa: E402
from tinytorch import data, optim  # noqa: E402
from tinytorch.train import evaluate, train  # noqa: E402

# Published figures on this data (Karpathy's makemore lectures, as the course brief gives
# them): the count bigram's loss and the MLP's validation loss (context 3, emb 10, hidden 200).
ANCHORS = {"count_bigram": 2.48, "mlp_val": 2.17}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run, well under a minute")
    p.add_argument("--out", default=str(HERE / "out"), help="output folder")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--steps", type=int, default=None, help="MLP optimizer steps (60000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="MLP peak learning rate (SGD)")
    p.add_argument(
        "--bigram-steps",
        type=int,
        default=None,
        help="full-batch steps for the neural bigram (150)",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="write benchmarks/results/ch03_language_model_cpu.{md,json} and the "
        "figures from this run (default mode only)",
    )
    args = p.parse_args(argv)
    if args.record and args.quick:
        p.error("--record stores the default run's figures; drop --quick")
    args.steps = args.steps or (1500 if args.quick else 60000)
    args.bigram_steps = args.bigram_steps or (20 if args.quick else 150)
    args.eval_every = max(1, args.steps // 30)
    return args


def loader(x, y, batch_size, shuffle=False, seed=0):
    ds = data.TensorDataset(tt.tensor(x), tt.tensor(y))
    return data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=seed)


def run_count_bigram(splits1, itos):
    (xtr, ytr), (xva, yva), (xte, yte) = splits1
    model = mm.CountBigram(len(itos)).fit(xtr[:, 0], ytr)
    res = {name: model.nll(x[:, 0], y) for name, (x, y) in zip(("train", "val", "test"), splits1)}
    print(
        f"count bigram: train {res['train']:.4f} | val {res['val']:.4f} | "
        f"test {res['test']:.4f}  (anchor ~{ANCHORS['count_bigram']})"
    )
    return model, res


def run_neural_bigram(splits1, itos, args):
    """Full-batch gradient descent on all training bigrams: every step sees all 180k."""
    tt.manual_seed(args.seed)
    model = mm.NeuralBigram(len(itos))
    # one batch per split, one-hot encoded once: (X (N, V), Y (N,))
    tr, va, te = ([(mm.NeuralBigram.encode(x[:, 0], len(itos)), tt.tensor(y))] for x, y in splits1)
    opt = optim.SGD(model.parameters(), lr=50.0)  # one-hot inputs: tiny gradients per weight
    print(f"neural bigram: {args.bigram_steps} full-batch SGD steps (lr 50)")
    hist = train(
        model,
        opt,
        tr,
        args.bigram_steps,
        val_data=va,
        eval_every=max(1, args.bigram_steps // 15),
        log_every=max(1, args.bigram_steps // 5),
    )
    res = {"train": evaluate(model, tr), "val": evaluate(model, va), "test": evaluate(model, te)}
    return model, hist, res


def run_mlp(splits3, itos, args):
    (xtr, ytr), (xva, yva), (xte, yte) = splits3
    tt.manual_seed(args.seed)
    model = mm.MLPLM(len(itos), block_size=3, n_embd=10, n_hidden=200)
    n_params = sum(p.numel() for p in model.parameters())
    opt = optim.SGD(model.parameters(), lr=args.lr)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 20)
    val = loader(xva, yva, 8192)
    print(
        f"MLP language model: {n_params} parameters, {args.steps} steps of SGD "
        f"(batch {args.batch_size}, lr {args.lr} -> {args.lr / 20} cosine)"
    )
    hist = train(
        model,
        opt,
        loader(xtr, ytr, args.batch_size, True, args.seed),
        args.steps,
        scheduler=sched,
        val_data=val,
        eval_every=args.eval_every,
        log_every=args.eval_every * 5,
    )
    res = {
        "train": evaluate(model, loader(xtr, ytr, 8192)),
        "val": evaluate(model, val),
        "test": evaluate(model, loader(xte, yte, 8192)),
        "parameters": n_params,
    }
    return model, hist, res


def smooth(values, k):
    k = max(1, min(k, len(values)))
    return np.convolve(values, np.ones(k) / k, mode="valid")


def plot_losses(out, count_res, nb_hist, mlp_hist):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    ax.plot(nb_hist.steps, nb_hist.train_loss, label="neural bigram, train (full batch)")
    ax.plot(nb_hist.val_steps, nb_hist.val_loss, "o", ms=3, label="neural bigram, val")
    ax.axhline(
        count_res["val"],
        color="k",
        ls="--",
        lw=1,
        label=f"count bigram, val {count_res['val']:.3f}",
    )
    ax.set(title="bigram: learning the count table", xlabel="step", ylabel="loss (nats/char)")
    ax.set_ylim(2.3, 3.4)
    ax.legend()
    ax = axes[1]
    k = max(1, len(mlp_hist.train_loss) // 100)
    ax.plot(
        np.arange(k, len(mlp_hist.train_loss) + 1),
        smooth(mlp_hist.train_loss, k),
        lw=1,
        label=f"MLP, train (mean of {k} batches)",
    )
    ax.plot(mlp_hist.val_steps, mlp_hist.val_loss, "o-", ms=3, label="MLP, val")
    ax.axhline(count_res["val"], color="k", ls="--", lw=1, label="count bigram, val")
    ax.axhline(
        ANCHORS["mlp_val"],
        color="r",
        ls=":",
        lw=1,
        label=f"published MLP val ~{ANCHORS['mlp_val']}",
    )
    ax.set(title="MLP language model (context 3, emb 10, hidden 200)", xlabel="step")
    ax.set_ylim(1.9, 3.0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)


def plot_counts(out, model, itos):
    fig, ax = plt.subplots(figsize=(9, 9))
    ax.imshow(np.log1p(model.counts), cmap="Blues")
    for i in range(len(itos)):
        for j in range(len(itos)):
            ax.text(j, i, itos[i] + itos[j], ha="center", va="bottom", fontsize=5, color="gray")
            ax.text(j, i, str(model.counts[i, j]), ha="center", va="top", fontsize=5)
    ax.set(
        title="bigram counts in the training names (row: first, column: next)", xticks=[], yticks=[]
    )
    fig.tight_layout()
    fig.savefig(out / "bigram_counts.png", dpi=110)
    plt.close(fig)


def plot_embeddings(out, model, itos):
    """The 10-d character vectors on their two main directions (PCA by SVD)."""
    e = model.emb.weight.detach().numpy().astype(np.float64)
    e = e - e.mean(axis=0)
    u, s, _ = np.linalg.svd(e, full_matrices=False)
    xy = u[:, :2] * s[:2]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(
        xy[:, 0],
        xy[:, 1],
        s=200,
        c=["tab:red" if c in "aeiouy" else "tab:blue" for c in itos],
        alpha=0.3,
    )
    for (x, y), c in zip(xy, itos):
        ax.text(x, y, c, ha="center", va="center")
    ax.set(title="learned character embeddings (2 main directions; vowels red)")
    fig.tight_layout()
    fig.savefig(out / "embeddings.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    words = mm.load_words()
    itos, stoi = mm.vocabulary(words)
    parts = mm.split_words(words)
    print(
        f"{len(words)} names, vocabulary of {len(itos)} ('.' + a-z); split "
        f"{'/'.join(str(len(p)) for p in parts)} names into train/val/test"
    )
    splits1 = [mm.build_dataset(p, stoi, 1) for p in parts]
    splits3 = [mm.build_dataset(p, stoi, 3) for p in parts]
    print(f"{len(splits3[0][0])} training examples (context -> next character)")

    count_model, count_res = run_count_bigram(splits1, itos)
    nb_model, nb_hist, nb_res = run_neural_bigram(splits1, itos, args)
    mlp_model, mlp_hist, mlp_res = run_mlp(splits3, itos, args)

    results = {"count_bigram": count_res, "neural_bigram": nb_res, "mlp": mlp_res}
    print("\nloss in nats per character (perplexity = e^loss):")
    print(f"{'model':<15}{'train':>8}{'val':>8}{'test':>8}{'val ppl':>9}")
    for name, r in results.items():
        print(
            f"{name:<15}{r['train']:8.4f}{r['val']:8.4f}{r['test']:8.4f}{math.exp(r['val']):9.2f}"
        )
    print(f"anchors: count bigram ~{ANCHORS['count_bigram']}, MLP val ~{ANCHORS['mlp_val']}")

    train_set = set(parts[0])
    lines, samples = [], {}
    for name, model, block in (
        ("count bigram", count_model, 1),
        ("neural bigram", mm.sampler(nb_model), 1),
        ("MLP", mlp_model, 3),
    ):
        names = mm.sample(model, itos, 20, block, seed=args.seed)
        novel = sum(n not in train_set for n in names)
        samples[name] = names
        lines.append(f"# {name} ({novel}/20 not in the training names)\n" + "\n".join(names))
        print(f"{name} samples: {', '.join(names[:10])}")
    (out / "samples.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")

    plot_losses(out, count_res, nb_hist, mlp_hist)
    plot_counts(out, count_model, itos)
    plot_embeddings(out, mlp_model, itos)
    seconds = time.perf_counter() - t0
    payload = {
        "results": results,
        "anchors": ANCHORS,
        "seconds": seconds,
        "config": {
            "quick": args.quick,
            "seed": args.seed,
            "mlp_steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "bigram_steps": args.bigram_steps,
            "block_size": 3,
            "n_embd": 10,
            "n_hidden": 200,
            "split": "80/10/10 of names, random.Random(42)",
        },
        "samples": samples,
        "history": {"mlp": mlp_hist.to_dict(), "neural_bigram": nb_hist.to_dict()},
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(
        f"wrote loss.png, bigram_counts.png, embeddings.png, samples.txt, results.json to "
        f"{out} ({seconds:.0f} s)"
    )
    if args.record:
        record(results, payload, out)
    return 0


def record(results, payload, out):
    """benchmarks/results/ch03_language_model_cpu.{md,json} and the figures, for the README."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import RESULTS, write_results

    rows = [
        {
            "model": name,
            "train": r["train"],
            "val": r["val"],
            "test": r["test"],
            "val perplexity": math.exp(r["val"]),
            "anchor": {
                "count_bigram": f"~{ANCHORS['count_bigram']}",
                "mlp": f"val ~{ANCHORS['mlp_val']}",
            }.get(name, ""),
        }
        for name, r in results.items()
    ]
    cfg = payload["config"]
    notes = (
        f"Losses in nats per character on the makemore names (80/10/10 split of names). "
        f"MLP: context 3, embedding 10, hidden 200, {cfg['mlp_steps']} SGD steps of batch "
        f"{cfg['batch_size']}, lr {cfg['lr']} cosine to {cfg['lr'] / 20}; neural bigram: "
        f"{cfg['bigram_steps']} full-batch SGD steps at lr 50. Whole run: "
        f"{payload['seconds']:.0f} s.\n\nSamples (seed {cfg['seed']}):\n\n"
        + "\n".join(f"- {k}: {', '.join(v)}" for k, v in payload["samples"].items())
    )
    write_results(
        "ch03_language_model",
        "cpu",
        ["model", "train", "val", "test", "val perplexity", "anchor"],
        rows,
        notes,
        extra={"config": cfg, "seconds": payload["seconds"], "samples": payload["samples"]},
    )
    for name in ("loss", "embeddings"):
        shutil.copyfile(out / f"{name}.png", RESULTS / f"ch03_language_model_{name}.png")


if __name__ == "__main__":
    raise SystemExit(main())
