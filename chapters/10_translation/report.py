"""Chapter 10's outputs: good and bad examples, cross-attention heat maps, training curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

import tinytorch as tt
from tinytorch.chapter import smooth
from tinytorch.data.translation import special_ids
from tinytorch.metrics import corpus_bleu


def sentence_bleus(hyps, groups) -> list[float]:
    """Each hypothesis' own BLEU against its references, for ranking examples, not reporting.
    Add-one smoothing of the 2- to 4-gram counts (Lin and Och, 2004): unsmoothed, or with the
    corpus default, a three-token output has no 4-gram and scores 0 however right it is."""
    return [corpus_bleu([h], [refs], smooth="add-k").score for h, (_, refs) in zip(hyps, groups)]


def examples(hyps, groups, k: int = 6, min_words: int = 6) -> dict:
    """The k best and k worst translations of sentences of at least min_words English words."""
    scores = sentence_bleus(hyps, groups)
    idx = [i for i, (en, _) in enumerate(groups) if len(en.split()) >= min_words]
    idx.sort(key=lambda i: (scores[i], i))

    def row(i):
        en, refs = groups[i]
        return dict(english=en, model=hyps[i], references=refs, bleu=round(scores[i], 1))

    return dict(good=[row(i) for i in idx[::-1][:k]], bad=[row(i) for i in idx[:k]])


def format_examples(title: str, ex: dict) -> str:
    lines = [f"== {title} =="]
    for kind in ("good", "bad"):
        lines.append(f"-- {kind} --")
        for r in ex[kind]:
            lines += [
                f"EN   {r['english']}",
                f"MT   {r['model']}   (sentence BLEU {r['bleu']})",
                *[f"REF  {ref}" for ref in r["references"]],
                "",
            ]
    return "\n".join(lines)


def _pieces(tok, ids) -> list[str]:
    """Each token's text (specials by name) for the axes of a heat map."""
    return [tok.decode([i]).replace(" ", "\u2423") for i in ids]


def attention_maps(models: dict, tok, sentences, hyps: dict, path):
    """One heat map per (model, sentence): the cross-attention weights while the decoder reads
    its own translation (teacher-forced on it), averaged over heads for the Transformer's last
    decoder layer; rows are French tokens, columns English ones."""
    ids = special_ids(tok)
    fig, axes = plt.subplots(
        len(models), len(sentences), figsize=(4.2 * len(sentences), 4.0 * len(models)),
        squeeze=False,
    )  # fmt: skip
    for r, (name, model) in enumerate(models.items()):
        for c, en in enumerate(sentences):
            src = tok.encode(en)
            out = tok.encode(hyps[name][c])
            tgt_in = [ids["bos_id"], *out]
            with tt.no_grad():
                model.eval()
                w = model.cross_attention(tt.tensor([src]), tt.tensor([tgt_in]))
            w = w.numpy()[0].mean(axis=0)  # (T, S), heads averaged
            ax = axes[r, c]
            ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(src)), _pieces(tok, src), rotation=90, fontsize=8)
            # row t is the attention while predicting token t: label it with that token
            ax.set_yticks(range(len(tgt_in)), [*_pieces(tok, out), "</s>"], fontsize=8)
            ax.set_title(f"{name}: {hyps[name][c]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves(histories: dict, path):
    """Training loss (smoothed) and validation loss of each model, against step and seconds."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, h in histories.items():
        k = max(1, len(h.train_loss) // 40)
        steps = np.arange(k, len(h.train_loss) + 1)
        per_step = h.seconds / max(1, len(h.train_loss))
        (line,) = a.plot(steps, smooth(h.train_loss, k), label=f"{name} train")
        a.plot(h.val_steps, h.val_loss, "o--", color=line.get_color(), label=f"{name} valid")
        b.plot(steps * per_step / 60, smooth(h.train_loss, k), color=line.get_color(), label=name)
    a.set_xlabel("step")
    a.set_ylabel("cross-entropy (label smoothing 0.1)")
    b.set_xlabel("training minutes (this machine)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
