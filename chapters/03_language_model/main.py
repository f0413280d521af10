"""Chapter 03: from counting to neural language models, on 32k names.

    python -m tinytorch.course run 3            # the default run (about a minute on 2 cores)
    python -m tinytorch.course run 3 --quick    # a smoke run, well under a minute
    python -m tinytorch.course run 3 --record   # also write benchmarks/results/ch03_*

Fits a counting bigram model, a neural bigram (a linear layer on one-hot characters) and
Bengio et al.'s MLP language model (context 3, embedding 10, hidden 200) on the makemore
names (80/10/10 train/val/test), then writes into --out (default chapters/03_language_model/
out/): loss.png (the learning curves against the count model and the published anchors),
bigram_counts.png (the count table), embeddings.png (the learned character embeddings),
samples.txt and results.json.
"""

from __future__ import annotations

import json
import math
import time

import makemore as mm  # this chapter's models and data (next to this file)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from scipy.cluster.hierarchy import leaves_list, linkage

import tinytorch as tt
from tinytorch import data, optim
from tinytorch.bench import record
from tinytorch.chapter import chapter_args, smooth
from tinytorch.train import evaluate, train

# Published figures on this data (Karpathy's makemore lectures, as the course brief gives
# them): the count bigram's loss and the MLP's validation loss (context 3, emb 10, hidden 200).
ANCHORS = {"count_bigram": 2.48, "mlp_val": 2.17}


def parse_args(argv=None):
    p = chapter_args(__file__, __doc__.split("\n\n")[0], seed=1337)
    p.add_argument("--steps", type=int, default=None, help="MLP optimizer steps (60000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="MLP peak learning rate (SGD)")
    p.add_argument(
        "--bigram-steps", type=int, default=None, help="neural bigram full-batch steps (150)"
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
    """The 27 x 27 count table on a log colour scale (counts span 1 to 5,000), every count
    written in its cell; rows: the previous character, columns: the next one."""
    counts = model.counts
    fig, ax = plt.subplots(figsize=(12, 11))
    im = ax.imshow(counts + 1, cmap="Blues", norm=LogNorm(vmin=1, vmax=counts.max() + 1))
    dark = np.log(counts + 1) > 0.6 * np.log(counts.max() + 1)
    for i in range(len(itos)):
        for j in range(len(itos)):
            n = counts[i, j]
            label = f"{n / 1000:.1f}k" if n >= 1000 else str(n)
            color = "white" if dark[i, j] else ("black" if n else "lightgray")
            ax.text(j, i, label, ha="center", va="center", fontsize=7, color=color)
    ticks = range(len(itos))
    ax.set_xticks(ticks, itos, fontsize=11)
    ax.set_yticks(ticks, itos, fontsize=11)
    ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
    ax.set(xlabel="next character", ylabel="previous character ('.' = start / end of a name)")
    ax.set_title("bigram counts in the training names (log colour scale)", pad=30)
    fig.colorbar(im, ax=ax, shrink=0.8, label="count + 1")
    fig.tight_layout()
    fig.savefig(out / "bigram_counts.png", dpi=110)
    plt.close(fig)


def embedding_summary(model, itos):
    """The character vectors (V, 10) seen two ways: their 2-D PCA projection with the share
    of variance it keeps, and their cosine similarities in a clustered order."""
    e = model.emb.weight.detach().numpy().astype(np.float64)
    centered = e - e.mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    order = leaves_list(linkage(unit, "average", metric="cosine"))
    return {
        "xy": u[:, :2] * s[:2],
        "explained": s[:2] ** 2 / (s**2).sum(),
        "cosine": unit @ unit.T,
        "order": order,
    }


def plot_embeddings(out, model, itos):
    """Left: the 10-d vectors on their two main directions; right: cosine similarity of every
    pair, in the order of a hierarchical clustering (similar characters next to each other)."""
    emb = embedding_summary(model, itos)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 6.5))
    xy, (e1, e2) = emb["xy"], emb["explained"]
    ax.scatter(xy[:, 0], xy[:, 1], s=250, color="tab:blue", alpha=0.25)
    for (x, y), c in zip(xy, itos):
        ax.text(x, y, c, ha="center", va="center", fontsize=11)
    ax.set(
        title="learned character embeddings: the 2 main directions",
        xlabel=f"direction 1 ({100 * e1:.0f}% of the variance)",
        ylabel=f"direction 2 ({100 * e2:.0f}% of the variance)",
    )
    order = emb["order"]
    labels = [itos[i] for i in order]
    im = ax2.imshow(emb["cosine"][np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1)
    ax2.set_xticks(range(len(order)), labels)
    ax2.set_yticks(range(len(order)), labels)
    ax2.set_title("cosine similarity of the 10-d vectors (clustered order)")
    fig.colorbar(im, ax=ax2, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out / "embeddings.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    out = args.out  # created by parse_args
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
        record_results(results, payload, out)
    return 0


def record_results(results, payload, out):
    """benchmarks/results/ch03_language_model_cpu.{md,json} and the figures, for the README."""
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
    record(
        "ch03_language_model",
        "cpu",
        ["model", "train", "val", "test", "val perplexity", "anchor"],
        rows,
        notes,
        extra={"config": cfg, "seconds": payload["seconds"], "samples": payload["samples"]},
        figures=[out / "loss.png", out / "embeddings.png", out / "bigram_counts.png"],
    )


if __name__ == "__main__":
    raise SystemExit(main())
