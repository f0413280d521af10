"""Chapter 10: English -> French translation with a Transformer and an attention GRU.

    python -m tinytorch.course run 10                      # train both, score, plot (minutes)
    python -m tinytorch.course run 10 --quick              # a smoke run for CI (seconds)
    python -m tinytorch.course run 10 --record             # also write benchmarks/results/
    python chapters/10_translation/main.py --translate FILE --out DIR   # translate FILE

Data: eng-fra-100k (97,009 pairs of 1 to ~10 English words), split by English sentence: a
test set of English sentences from lines 20,001-100,000, another from the first 20,000 (the
shortest), a validation set, and all the rest to train on; each test sentence is scored
against all its French translations. One byte-level BPE (chapter 02) for both languages.
Both models train with teacher forcing, label smoothing 0.1, AdamW, warmup then a cosine
decay, on batches of similar-length sentences. Then greedy and beam search (beam 4) on both
test sets, BLEU (sacrebleu's), good and bad examples, cross-attention heat maps.

Written into --out (default chapters/10_translation/out/): tokenizer.json,
transformer.safetensors/.json and rnn.safetensors/.json (what --translate loads),
curves.png, attention.png, examples.txt, metrics.json.
"""

from __future__ import annotations

import json
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import report
from translate import (
    TOKENIZER_FILE,
    bleu,
    build_model,
    load_model,
    load_recipes,
    num_params,
    save_model,
    translate,
)

import tinytorch as tt
from tinytorch.bench import record
from tinytorch.chapter import chapter_args
from tinytorch.data import dataset_path
from tinytorch.data.translation import (
    SHORT_LINES,
    PairBatches,
    encode_pairs,
    read_pairs,
    special_ids,
    split_by_sentence,
    train_joint_bpe,
)
from tinytorch.models.seq2seq import seq2seq_loss
from tinytorch.optim import AdamW
from tinytorch.optim.groups import decay_param_groups
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.train import train

RECIPES = load_recipes()
DATA = RECIPES["data"]
p = chapter_args(__file__, "Chapter 10: translation")
p.add_argument("--translate", type=Path, metavar="FILE", help="translate FILE (English lines)")
p.add_argument("--beam", type=int, default=4, help="beam width (1: greedy)")
p.add_argument("--vocab-size", type=int, default=DATA["vocab_size"], help="joint BPE size")
p.add_argument("--transformer-steps", type=int, default=RECIPES["transformer"]["train"]["steps"])
p.add_argument("--rnn-steps", type=int, default=RECIPES["rnn"]["train"]["steps"], help="0: none")
p.add_argument("--max-tokens", type=int, default=None, help="batch size in padded tokens")
p.add_argument("--eval-every", type=int, default=200)
p.add_argument("--n-valid", type=int, default=DATA["n_valid"], help="English sentences")
p.add_argument("--n-test", type=int, default=DATA["n_test"], help="from lines > 20,000")
p.add_argument("--n-test-short", type=int, default=DATA["n_test_short"], help="first 20,000")
p.add_argument("--train-pairs", type=int, default=None, help="use only this many pairs")
p.set_quick(vocab_size=400, transformer_steps=10, rnn_steps=6, max_tokens=500, eval_every=5,
            n_valid=16, n_test=24, n_test_short=12, train_pairs=2000)  # fmt: skip
args = p.parse_args()
out = args.out

# ---- --translate FILE: load the model a default run saved, one French line per English line
if args.translate is not None:
    try:
        model, tok = load_model(out, "transformer")
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    lines = args.translate.read_text(encoding="utf-8").splitlines()
    for fr in translate(model, tok, lines, beam_size=args.beam):
        print(fr)
    sys.exit(0)

# ---- data and tokenizer -------------------------------------------------------------------
t_start = time.perf_counter()
pairs = read_pairs(dataset_path("eng-fra-100k"))
splits = split_by_sentence(pairs, args.n_valid, args.n_test, args.n_test_short, seed=args.seed)
train_pairs = splits.train
if args.train_pairs:
    keep = np.random.default_rng(args.seed).permutation(len(train_pairs))[: args.train_pairs]
    train_pairs = [train_pairs[i] for i in sorted(keep)]
print(f"eng-fra-100k: {len(pairs):,} pairs; {splits.summary()}")
tok = train_joint_bpe(train_pairs, args.vocab_size)
tok.save(out / TOKENIZER_FILE)
ids = special_ids(tok)
src, tgt = encode_pairs(tok, train_pairs, DATA["max_len"])
print(
    f"joint BPE: {tok.vocab_size} tokens; English {np.mean([len(s) for s in src]):.1f} and "
    f"French {np.mean([len(t) for t in tgt]):.1f} tokens a sentence on average; "
    f"{len(src):,} training pairs",
    flush=True,
)
valid_pairs = [(en, fr) for en, refs in splits.valid for fr in refs]
valid_src, valid_tgt = encode_pairs(tok, valid_pairs, DATA["max_len"])


# ---- training -----------------------------------------------------------------------------
def fit(kind: str, steps: int):
    model_kw, hp = dict(RECIPES[kind]["model"]), dict(RECIPES[kind]["train"], steps=steps)
    if args.quick:  # narrow models: the quick run checks the pipeline, not the translations
        small = dict(d_model=64, dim_feedforward=128, emb_dim=64, hidden_size=64)
        model_kw.update({k: v for k, v in small.items() if k in model_kw})
    if args.max_tokens:
        hp["max_tokens"] = args.max_tokens
    tt.manual_seed(args.seed)
    model = build_model(kind, tok, model_kw)
    batches = PairBatches(src, tgt, max_tokens=hp["max_tokens"], seed=args.seed, **ids)
    valid = PairBatches(valid_src, valid_tgt, max_tokens=hp["max_tokens"], **ids).fixed(8)
    decay = decay_param_groups(model, hp["weight_decay"])
    optimizer = AdamW(decay, lr=hp["lr"], betas=tuple(hp["betas"]))
    warmup = min(hp["warmup"], steps // 4)  # --quick's few steps
    scheduler = WarmupCosineLR(optimizer, warmup, steps, min_ratio=hp["min_lr"] / hp["lr"])
    print(
        f"{kind}: {num_params(model) / 1e6:.2f}M parameters, {steps} steps of about "
        f"{hp['max_tokens']} tokens ({batches.batches_per_epoch()} batches an epoch)",
        flush=True,
    )
    hist = train(
        model,
        optimizer,
        batches,
        steps,
        loss_fn=partial(seq2seq_loss, label_smoothing=hp["label_smoothing"]),
        scheduler=scheduler,
        val_data=valid,
        eval_every=args.eval_every,
        clip_grad_norm=hp["clip"],
        log_every=max(1, min(50, steps // 4)),
    )
    print(f"{kind}: {hist.seconds:.0f} s, {batches.epoch} epoch(s) begun", flush=True)
    save_model(out, kind, model, model_kw)
    return model, hist, hp


models, histories, hparams = {}, {}, {}
for name, steps in (("transformer", args.transformer_steps), ("rnn", args.rnn_steps)):
    if steps > 0:
        models[name], histories[name], hparams[name] = fit(name, steps)

# ---- scoring: greedy and beam search on both test sets ------------------------------------
scores, hyps, decode_s = {}, {}, {}
test_sets = {"test": splits.test, "test_short": splits.test_short}
for name, model in models.items():
    for set_name, groups in test_sets.items():
        for beam in (1, args.beam):
            t0 = time.perf_counter()
            h = translate(model, tok, [en for en, _ in groups], beam_size=beam)
            key = f"{name}/{set_name}/{'greedy' if beam == 1 else f'beam{beam}'}"
            decode_s[key] = time.perf_counter() - t0
            hyps[key], scores[key] = h, bleu(h, groups)
            print(
                f"{key:32s} BLEU {scores[key].score:5.2f}  ({len(groups) / decode_s[key]:.0f} "
                f"sentences/s)",
                flush=True,
            )

# ---- examples, heat maps, curves ----------------------------------------------------------
best = f"beam{args.beam}"
text = []
for name in models:
    ex = report.examples(hyps[f"{name}/test/{best}"], splits.test)
    text.append(report.format_examples(f"{name}, beam {args.beam}, test set", ex))
(out / "examples.txt").write_text("\n\n".join(text) + "\n", encoding="utf-8")
print(text[0][:1500])
shown = [i for i, (en, _) in enumerate(splits.test) if 6 <= len(en.split()) <= 9][:3]
attention = report.attention_maps(
    models,
    tok,
    [splits.test[i][0] for i in shown],
    {name: [hyps[f"{name}/test/{best}"][i] for i in shown] for name in models},
    out / "attention.png",
)
curves = report.curves(histories, out / "curves.png")
seconds = time.perf_counter() - t_start

metrics = {
    "bleu": {k: round(v.score, 2) for k, v in scores.items()},
    "bleu_detail": {k: str(v) for k, v in scores.items()},
    "decode_sentences_per_s": {k: len(test_sets[k.split("/")[1]]) / s for k, s in decode_s.items()},
    "train_seconds": {k: h.seconds for k, h in histories.items()},
    "ms_per_step": {k: 1e3 * h.seconds / len(h.steps) for k, h in histories.items()},
    "final_val_loss": {k: h.val_loss[-1] for k, h in histories.items()},
    "history": {k: h.to_dict() for k, h in histories.items()},
    "params": {k: num_params(m) for k, m in models.items()},
    "train_settings": hparams,
    "vocab_size": tok.vocab_size,
    "splits": splits.summary(),
    "short_lines": SHORT_LINES,
    "total_seconds": seconds,
}
(out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
print(f"done in {seconds / 60:.1f} min; outputs in {out}")

if args.record:
    rows = []
    for name in models:
        row = {"model": name, "params (M)": round(num_params(models[name]) / 1e6, 2)}
        row["steps"] = len(histories[name].steps)
        row["train min"] = round(histories[name].seconds / 60, 1)
        for set_name in test_sets:
            for dec in ("greedy", best):
                row[f"{set_name} {dec}"] = round(scores[f"{name}/{set_name}/{dec}"].score, 2)
        rows.append(row)
    record(
        "translation_ch10",
        "cpu",
        list(rows[0]),
        rows,
        notes=(
            "chapters/10_translation/main.py: BLEU (sacrebleu's corpus BLEU, 13a tokens, all "
            "references of each English sentence) on test = English sentences from lines "
            f"20,001-100,000 of eng-fra-100k and test_short = from the first 20,000; "
            f"{splits.summary()}. Joint byte-level BPE of {tok.vocab_size} tokens. "
            f"Whole run {seconds / 60:.1f} min."
        ),
        extra=metrics,
        figures=[curves, attention],
    )
