"""Chapter 10's Transformer trained by tinytorch and by a PyTorch twin, then decoded.

Both start from the same weights (tinytorch's initialization, copied into the twin), see the
same batches in the same order (the chapter's length buckets of eng-fra-100k, joint BPE) and
use the same settings (chapters/10_translation/recipes.json: AdamW, warmup + cosine, label
smoothing, clipping, no dropout). Reported, in one run:

- training step time: the median over all steps of each framework, and the ratio;
- BLEU on the chapter's test split (English sentences from lines 20,001-100,000, every
  reference), greedy and beam 4: the twin's trained weights are loaded into a tinytorch
  model and decoded by the same code, so the comparison is about training alone (the issue
  asks for the two to be within 1 BLEU);
- decoding speed of the tinytorch model, sentences per second, greedy and beam 4, with and
  without the KV cache.

    python -m benchmarks.translation_cpu                # the chapter's default steps (long)
    python -m benchmarks.translation_cpu --steps 30 --n-test 100 --name translation_cpu_short

Steps are timed with tinytorch.bench.time_cpu (each call is one optimizer step on the next
batch); tinytorch's step is tinytorch.train.train_step, the one the chapter trains with.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch

import tinytorch as tt
from tinytorch.bench import ROOT, time_cpu, write_results
from tinytorch.data import dataset_path
from tinytorch.data.translation import (
    PairBatches,
    decode_corpus,
    encode_pairs,
    read_pairs,
    special_ids,
    split_by_sentence,
    train_joint_bpe,
)
from tinytorch.metrics import corpus_bleu
from tinytorch.models.seq2seq import Seq2SeqTransformer, seq2seq_loss
from tinytorch.nn.attention import sinusoidal_positional_encoding
from tinytorch.optim import AdamW
from tinytorch.optim.groups import decay_param_groups
from tinytorch.optim.lr_scheduler import WarmupCosineLR, warmup_cosine
from tinytorch.train import train_step

RECIPES = ROOT / "chapters" / "10_translation" / "recipes.json"


class TorchSeq2SeqTransformer(torch.nn.Module):
    """The twin of tinytorch's Seq2SeqTransformer: the same submodule names (so one
    state_dict fits both), masks, embedding scale and sinusoidal positions."""

    def __init__(self, vocab, pad_id, d_model, nhead, num_encoder_layers, num_decoder_layers,
                 dim_feedforward, dropout, max_len, share_embeddings, tie_weights,
                 norm_first=True):  # fmt: skip
        super().__init__()
        self.src_tok_emb = torch.nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.tgt_tok_emb = (
            self.src_tok_emb
            if share_embeddings
            else torch.nn.Embedding(vocab, d_model, padding_idx=pad_id)
        )
        pe = sinusoidal_positional_encoding(max_len, d_model).numpy()
        self.register_buffer("pe", torch.tensor(pe), persistent=False)
        self.transformer = torch.nn.Transformer(
            d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout,
            batch_first=True, norm_first=norm_first,
        )  # fmt: skip
        self.generator = torch.nn.Linear(d_model, vocab)
        if tie_weights:
            self.generator.weight = self.tgt_tok_emb.weight
        self.pad_id, self.scale = pad_id, math.sqrt(d_model)

    def _embed(self, emb, ids):
        return emb(ids) * self.scale + self.pe[: ids.shape[1]]

    def forward(self, src, tgt_in):
        src_pad, tgt_pad = src == self.pad_id, tgt_in == self.pad_id
        T = tgt_in.shape[1]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        out = self.transformer(
            self._embed(self.src_tok_emb, src),
            self._embed(self.tgt_tok_emb, tgt_in),
            tgt_mask=causal,
            src_key_padding_mask=src_pad,
            tgt_key_padding_mask=tgt_pad,
            memory_key_padding_mask=src_pad,
        )
        return self.generator(out)


def torch_param_groups(model, weight_decay):
    """decay_param_groups' rule (matrices decay, vectors do not), each tied tensor once."""
    seen, decay, rest = set(), [], []
    for p in model.parameters():  # named order, tied parameters once, like tinytorch's
        if id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def warmup(hp, steps):
    return min(hp["warmup"], steps // 4)  # as the chapter: short runs warm up for a quarter


def train_tinytorch(model, batches, hp, steps):
    opt = AdamW(
        decay_param_groups(model, hp["weight_decay"]), lr=hp["lr"], betas=tuple(hp["betas"])
    )
    sched = WarmupCosineLR(opt, warmup(hp, steps), steps, min_ratio=hp["min_lr"] / hp["lr"])
    loss_fn, losses = partial(seq2seq_loss, label_smoothing=hp["label_smoothing"]), []

    def step():
        losses.append(train_step(model, opt, batches(), loss_fn, clip_grad_norm=hp["clip"]))
        sched.step()

    return time_cpu(step, warmup=0, repeat=steps), losses


def train_torch(model, batches, hp, steps):
    opt = torch.optim.AdamW(
        torch_param_groups(model, hp["weight_decay"]), lr=hp["lr"], betas=tuple(hp["betas"])
    )
    ratio = hp["min_lr"] / hp["lr"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup(hp, steps), steps, ratio)
    )
    losses = []

    def step():
        src, tgt_in, tgt_out = (torch.from_numpy(t.numpy()) for t in batches())
        opt.zero_grad()
        logits = model(src, tgt_in)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            tgt_out.reshape(-1),
            label_smoothing=hp["label_smoothing"],
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["clip"])
        opt.step()
        sched.step()
        losses.append(loss.item())

    model.train()
    return time_cpu(step, warmup=0, repeat=steps), losses


def bleu_of(model, tok, groups, beam_size):
    ids = special_ids(tok)
    outs = decode_corpus(model, [tok.encode(en) for en, _ in groups], beam_size=beam_size, **ids)
    hyps = [tok.decode(o).strip() for o in outs]
    return corpus_bleu(hyps, [refs for _, refs in groups], smooth="exp").score


def main():
    recipes = json.loads(RECIPES.read_text())
    mk, hp, data = recipes["transformer"]["model"], recipes["transformer"]["train"], recipes["data"]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=hp["steps"])
    p.add_argument("--n-test", type=int, default=data["n_test"])
    p.add_argument("--n-speed", type=int, default=200, help="sentences timed for decoding speed")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--name", default="translation_cpu")
    p.add_argument("--notes", default="")
    args = p.parse_args()

    pairs = read_pairs(dataset_path("eng-fra-100k"))
    splits = split_by_sentence(pairs, data["n_valid"], args.n_test, data["n_test_short"], args.seed)
    tok = train_joint_bpe(splits.train, data["vocab_size"])
    ids = special_ids(tok)
    src, tgt = encode_pairs(tok, splits.train, data["max_len"])
    V = tok.vocab_size
    print(f"{splits.summary()}; joint BPE {V}; {args.steps} steps of {hp['max_tokens']} tokens")

    tt.manual_seed(args.seed)
    ours = Seq2SeqTransformer(V, V, pad_id=ids["pad_id"], **mk)
    twin = TorchSeq2SeqTransformer(V, ids["pad_id"], **mk)
    twin.load_state_dict(
        {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in ours.state_dict().items()}
    )
    # the same function at the start: one batch, both losses
    probe = PairBatches(src, tgt, max_tokens=hp["max_tokens"], seed=args.seed, **ids)()
    with tt.no_grad():
        l_ours = seq2seq_loss(ours.eval(), probe, hp["label_smoothing"]).item()
    with torch.no_grad():
        s, i, o = (torch.from_numpy(t.numpy()) for t in probe)
        logits = twin.eval()(s, i)
        l_twin = torch.nn.functional.cross_entropy(
            logits.reshape(-1, V), o.reshape(-1), label_smoothing=hp["label_smoothing"]
        ).item()
    print(f"initial loss: tinytorch {l_ours:.6f}, torch {l_twin:.6f}")
    ours.train()

    rows, curves = [], {}
    for name, fn, model in (("tinytorch", train_tinytorch, ours), ("torch", train_torch, twin)):
        batches = PairBatches(src, tgt, max_tokens=hp["max_tokens"], seed=args.seed, **ids)
        median, losses = fn(model, batches, hp, args.steps)
        curves[name] = losses
        last = round(float(np.mean(losses[-50:])), 4)
        rows.append(
            {"framework": name, "ms/step (median)": round(1e3 * median, 1), "last 50 loss": last}
        )
        print(f"{name}: {1e3 * median:.1f} ms/step, last loss {losses[-1]:.4f}", flush=True)
    trained_twin = Seq2SeqTransformer(V, V, pad_id=ids["pad_id"], **mk)
    trained_twin.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    for row, model in zip(rows, (ours, trained_twin)):
        for beam in (1, 4):
            key = "BLEU greedy" if beam == 1 else "BLEU beam 4"
            row[key] = round(bleu_of(model, tok, splits.test, beam), 2)
    base = rows[1]["ms/step (median)"]
    for row in rows:
        row["ratio vs torch"] = round(row["ms/step (median)"] / base, 3)

    # decoding speed of the tinytorch model (first n_speed test sentences)
    sources = [tok.encode(en) for en, _ in splits.test[: args.n_speed]]
    speed = {}
    for beam in (1, 4):
        for cache in (True, False):

            def run(beam=beam, cache=cache):
                decode_corpus(ours, sources, beam_size=beam, use_cache=cache, **ids)

            t = time_cpu(run, warmup=1, repeat=3)
            label = f"{'greedy' if beam == 1 else 'beam 4'}, {'KV cache' if cache else 'no cache'}"
            speed[label] = len(sources) / t
            print(f"decoding {label}: {speed[label]:.1f} sentences/s", flush=True)
    for row in rows:
        row.update({f"{k} (sent/s)": (round(v, 1) if row["framework"] == "tinytorch" else "")
                    for k, v in speed.items()})  # fmt: skip

    figure = _plot(curves, Path(tempfile.mkdtemp()) / "loss.png")  # copied to results/
    gap = rows[0]["BLEU beam 4"] - rows[1]["BLEU beam 4"]
    notes = (
        f"Chapter 10's Transformer ({json.dumps(mk)}) on eng-fra-100k, joint BPE of {V} tokens, "
        f"{args.steps} steps of about {hp['max_tokens']} padded tokens, settings "
        f"{json.dumps({k: v for k, v in hp.items() if k != 'steps'})}. Same initial weights "
        f"(initial loss {l_ours:.5f} vs {l_twin:.5f}) and batches. BLEU on {len(splits.test)} test "
        f"sentences (lines 20,001-100,000), the twin decoded by tinytorch's decoder: beam-4 gap "
        f"tinytorch - torch = {gap:+.2f}. Decoding speed over {len(sources)} test sentences, "
        f"batches of 200, tinytorch only. torch threads {torch.get_num_threads()}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; load average "
        f"at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}. {args.notes}"
    )
    write_results(args.name, "cpu", list(rows[0]), rows, notes=notes,
                  extra={"losses": curves, "decode_sentences_per_s": speed, "bleu_gap": gap},
                  figures=[figure])  # fmt: skip


def _plot(curves, path):
    import matplotlib.pyplot as plt

    from tinytorch.chapter import smooth

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, losses in curves.items():
        k = max(1, len(losses) // 40)
        ax.plot(np.arange(k, len(losses) + 1), smooth(losses, k), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (label smoothing 0.1)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
