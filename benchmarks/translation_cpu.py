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

Each framework trains in its own worker process (tinytorch.bench_workers), with its library's
own OpenMP defaults: the parent prepares the data and the initial weights once and hands them
over in a temporary folder, and the workers take turns, `--chunk` steps at a time, the order
alternating, so both see the same minutes of the machine. Each step (one optimizer step on the
next batch) is timed in its worker; tinytorch's step is tinytorch.train.train_step, the one the
chapter trains with. The workers save their trained weights into the folder; BLEU and decoding
speed are measured in the parent, which never imports PyTorch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

import tinytorch as tt
from tinytorch.bench import ROOT, import_torch, time_cpu, write_results
from tinytorch.bench_workers import (
    FRAMEWORKS,
    interleave,
    per_framework,
    read_job,
    timing,
    write_job,
)
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


def torch_seq2seq(vocab, pad_id, d_model, nhead, num_encoder_layers, num_decoder_layers,
                  dim_feedforward, dropout, max_len, share_embeddings, tie_weights,
                  norm_first=True):  # fmt: skip
    """The twin of tinytorch's Seq2SeqTransformer: the same submodule names (so one
    state_dict fits both), masks, embedding scale and sinusoidal positions."""
    torch = import_torch()

    class TorchSeq2SeqTransformer(torch.nn.Module):
        def __init__(self):
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
                d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                dropout, batch_first=True, norm_first=norm_first,
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

    return TorchSeq2SeqTransformer()


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


# ---- the two trainers: the same step, line for line -------------------------------------
def setup_tinytorch(job, init, batches, probe):
    """tinytorch's model (from `init`), its loss on `probe` before training, and step()."""
    hp = job["hp"]
    model = Seq2SeqTransformer(job["vocab"], job["vocab"], pad_id=job["pad_id"], **job["model"])
    model.load_state_dict(init)
    with tt.no_grad():
        initial = seq2seq_loss(model.eval(), probe, hp["label_smoothing"]).item()
    model.train()
    opt = AdamW(
        decay_param_groups(model, hp["weight_decay"]), lr=hp["lr"], betas=tuple(hp["betas"])
    )
    steps = job["steps"]
    sched = WarmupCosineLR(opt, warmup(hp, steps), steps, min_ratio=hp["min_lr"] / hp["lr"])
    loss_fn = partial(seq2seq_loss, label_smoothing=hp["label_smoothing"])

    def step():
        loss = train_step(model, opt, batches(), loss_fn, clip_grad_norm=hp["clip"])
        sched.step()
        return loss

    return model, initial, step


def setup_torch(job, init, batches, probe):
    """The PyTorch twin (from `init`), its loss on `probe` before training, and step()."""
    torch = import_torch()
    hp = job["hp"]
    model = torch_seq2seq(job["vocab"], job["pad_id"], **job["model"])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in init.items()})

    def loss_of(batch):
        src, tgt_in, tgt_out = (torch.from_numpy(t.numpy()) for t in batch)
        logits = model(src, tgt_in)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            tgt_out.reshape(-1),
            label_smoothing=hp["label_smoothing"],
        )

    model.eval()
    with torch.no_grad():
        initial = loss_of(probe).item()
    model.train()
    opt = torch.optim.AdamW(
        torch_param_groups(model, hp["weight_decay"]), lr=hp["lr"], betas=tuple(hp["betas"])
    )
    steps, ratio = job["steps"], hp["min_lr"] / hp["lr"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup(hp, steps), steps, ratio)
    )

    def step():
        opt.zero_grad()
        loss = loss_of(batches())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hp["clip"])
        opt.step()
        sched.step()
        return loss.item()

    return model, initial, step


class Run:
    """One framework's training inside its benchmark worker (tinytorch.bench_workers).

    step(i) is one optimizer step on the next batch (timed); finish() saves the trained weights
    as <framework>.npz into `workdir` and returns the loss on the first batch before training."""

    def __init__(self, framework: str, workdir: str):
        if framework == "torch":
            import_torch()  # before anything else: PyTorch's own OpenMP defaults
        self.framework, self.work = framework, Path(workdir)
        init, job = read_job(workdir)
        ids, hp = job["ids"], job["hp"]

        def make_batches():  # the same sequence in both workers: the same data, the same seed
            return PairBatches(job["src"], job["tgt"], max_tokens=hp["max_tokens"],
                               seed=job["seed"], **ids)  # fmt: skip

        setup = setup_tinytorch if framework == "tinytorch" else setup_torch
        probe = make_batches()()  # the first batch: both losses before training
        self.model, self.initial_loss, self._step = setup(job, init, make_batches(), probe)
        self.steps = job["steps"]

    def step(self, i: int) -> float:
        loss = self._step()
        if i % 25 == 0 or i == self.steps - 1:
            print(f"  {self.framework:9s} step {i:5d}  loss {loss:.4f}", flush=True)
        return loss

    def finish(self) -> dict:
        path = self.work / f"{self.framework}.npz"
        np.savez(path, **{k: v.detach().numpy() for k, v in self.model.state_dict().items()})
        return {"initial_loss": self.initial_loss, "weights": str(path)}


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
    p.add_argument("--chunk", type=int, default=10, help="steps per turn (the workers alternate)")
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

    def new_model():
        return Seq2SeqTransformer(V, V, pad_id=ids["pad_id"], **mk)

    tt.manual_seed(args.seed)
    init = {k: v.detach().numpy() for k, v in new_model().state_dict().items()}
    job = dict(src=src, tgt=tgt, ids=ids, pad_id=ids["pad_id"], vocab=V, model=mk, hp=hp,
               steps=args.steps, seed=args.seed)  # fmt: skip
    names = FRAMEWORKS
    with tempfile.TemporaryDirectory() as work:
        write_job(work, init, job)
        print(f"{args.steps} steps each, {args.chunk} at a time in turn", flush=True)
        targets = per_framework("benchmarks.translation_cpu:Run", work)
        runs = interleave(targets, args.steps, args.chunk)
        trained = {n: new_model() for n in names}  # the twin's weights in a tinytorch model
        for n, model in trained.items():
            model.load_state_dict(dict(np.load(runs[n]["result"]["weights"])))
    initial = {n: runs[n]["result"]["initial_loss"] for n in names}
    print(f"initial loss: tinytorch {initial['tinytorch']:.6f}, torch {initial['torch']:.6f}")

    rows, curves = [], {}
    for name in names:
        losses, median = runs[name]["outputs"], statistics.median(runs[name]["times"])
        curves[name] = losses
        last = round(float(np.mean(losses[-50:])), 4)
        rows.append(
            {"framework": name, "ms/step (median)": round(1e3 * median, 1), "last 50 loss": last}
        )
        print(f"{name}: {1e3 * median:.1f} ms/step, last loss {losses[-1]:.4f}", flush=True)
    for row in rows:
        for beam in (1, 4):
            key = "BLEU greedy" if beam == 1 else "BLEU beam 4"
            row[key] = round(bleu_of(trained[row["framework"]], tok, splits.test, beam), 2)
    base = rows[1]["ms/step (median)"]
    for row in rows:
        row["ratio vs torch"] = round(row["ms/step (median)"] / base, 3)

    # decoding speed of the tinytorch model (first n_speed test sentences), in this process
    ours = trained["tinytorch"]
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
    first = min(10, args.steps)
    loss_gap = max(abs(a - b) for a, b in zip(curves["tinytorch"][:first], curves["torch"][:first]))
    notes = (
        f"Chapter 10's Transformer ({json.dumps(mk)}) on eng-fra-100k, joint BPE of {V} tokens, "
        f"{args.steps} steps of about {hp['max_tokens']} padded tokens, settings "
        f"{json.dumps({k: v for k, v in hp.items() if k != 'steps'})}. Same initial weights "
        f"(initial loss {initial['tinytorch']:.5f} vs {initial['torch']:.5f}) and batches "
        f"(largest training-loss gap over the first {first} steps {loss_gap:.2e}). Timing: "
        f"each framework trains in its own worker process with its library's own OpenMP "
        f"defaults (tinytorch.bench_workers), in turns of {args.chunk} steps, the order "
        f"alternating each turn; ms/step is the median over all {args.steps} steps. BLEU on "
        f"{len(splits.test)} test sentences (lines 20,001-100,000), the twin decoded by "
        f"tinytorch's decoder: beam-4 gap tinytorch - torch = {gap:+.2f}. Decoding speed over "
        f"{len(sources)} test sentences, batches of 200, tinytorch only, in a process without "
        f"PyTorch. torch threads {runs['torch'].get('torch_threads')}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}. {args.notes}"
    )
    extra = {
        "timing": timing(args.chunk),
        "losses": curves,
        "step_times_s": {n: runs[n]["times"] for n in names},
        "decode_sentences_per_s": speed,
        "bleu_gap": gap,
    }
    write_results(args.name, "cpu", list(rows[0]), rows, notes=notes, extra=extra,
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
