"""Chapter 09: pretrain a small BERT with masked-LM, fine-tune it on SST-2, compare.

    python -m tinytorch.course run 9                     # the default run (minutes)
    python -m tinytorch.course run 9 --quick             # a smoke run for CI (seconds)
    python -m tinytorch.course run 9 --record            # also write benchmarks/results/
    python chapters/09_finetuning/main.py --predict sentences.txt --out DIR   # one label a line

1. A tokenizer (a word vocabulary by default, --tokenizer bpe for chapter 02's byte-level BPE)
   from the unlabelled text: WikiText-2 valid, the SST-2 train sentences and GLUE phrases,
   the UCI review sentences.
2. Pretraining: a small BertForMaskedLM on that text (15% of the tokens masked).
3. Fine-tuning on SST-2 (GLUE's 67k train phrases by default): BertForSequenceClassification
   from the pretrained folder, the body at a lower learning rate than the new head
   (body_lr_groups). The same model from scratch with the same budget, and chapter 05's
   LSTM (bidirectional) as baselines; --gpt adds a GPT pretrained on next tokens.
4. Dev accuracy and F1 (stsa.binary.dev, 872 sentences), curves, a confusion matrix; the
   fine-tuned model and the tokenizer saved under --out/model for --predict.
"""

from __future__ import annotations

import json
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
from baselines import BiLSTMClassifier
from data import (
    BPEWords,
    WordTokenizer,
    encode_set,
    glue_phrases,
    load_tokenizer,
    pretraining_texts,
    sst_sentences,
    sst_words,
)
from pooling import BertMeanPoolClassifier
from recipes import finetune, predict, pretrain_mlm

import tinytorch as tt
from tinytorch.bench import record
from tinytorch.chapter import chapter_args, smooth
from tinytorch.metrics import binary_scores
from tinytorch.models import BertConfig, BertForMaskedLM, BertForSequenceClassification
from tinytorch.optim import body_lr_groups

p = chapter_args(__file__, "Chapter 09: pretraining and fine-tuning")
p.add_argument("--predict", metavar="FILE", help="label each line of FILE with --out's model")
p.add_argument("--tokenizer", choices=("word", "bpe"), default="word")
p.add_argument("--bpe-vocab", type=int, default=8192)
p.add_argument("--hidden", type=int, default=128)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--max-len", type=int, default=64, help="tokens per sequence, [CLS] and [SEP] in")
p.add_argument("--pretrain-steps", type=int, default=1200)
p.add_argument("--pretrain-batch", type=int, default=128)
p.add_argument("--pretrain-lr", type=float, default=1e-3)
p.add_argument("--finetune-data", choices=("glue", "sentences", "both"), default="glue")
p.add_argument("--epochs", type=float, default=1.5, help="fine-tuning epochs (BERT models)")
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--lr", type=float, default=1e-3, help="the new head's (and scratch model's) lr")
p.add_argument("--body-lr", type=float, default=1e-3, help="the pretrained body's lr")
p.add_argument("--pool", choices=("mean", "cls"), default="mean", help="what the head reads")
p.add_argument("--lstm-epochs", type=float, default=1.0)
p.add_argument("--lstm-lr", type=float, default=2e-3)
p.add_argument("--skip-baselines", action="store_true", help="no scratch model, no LSTM")
p.add_argument("--gpt", action="store_true", help="also a GPT pretrained on next tokens")
p.set_quick(pretrain_steps=30, epochs=0.02, lstm_epochs=0.02, hidden=32, bpe_vocab=600)
args = p.parse_args()
out = args.out
model_dir = out / "model"
CLASSIFIERS = {"cls": BertForSequenceClassification, "mean": BertMeanPoolClassifier}
Classifier = CLASSIFIERS[args.pool]


def log(line):
    print(line, flush=True)


# ---- --predict: apply a saved model to new sentences ------------------------------------------
if args.predict:
    if not (model_dir / "config.json").is_file():
        sys.exit(
            f"no trained model in {model_dir}: run `python -m tinytorch.course run 9 --out "
            f"{out}` (main.py without --predict) first; it saves the fine-tuned model there"
        )
    meta = json.loads((model_dir / "chapter09.json").read_text())
    tok = load_tokenizer(model_dir / "tokenizer.json")
    model = CLASSIFIERS[meta.get("pool", "cls")].from_pretrained(model_dir)
    lines = open(args.predict, encoding="utf-8").read().splitlines()
    seqs = [tok.encode(sst_words(line.lower()), meta["max_len"]) for line in lines]
    for label in predict(model, seqs, tok.pad_id) if seqs else []:
        print(int(label))
    sys.exit(0)

t_start = time.perf_counter()
rng = np.random.default_rng(args.seed)
tt.manual_seed(args.seed)

# ---- data and tokenizer -----------------------------------------------------------------------
phrases, phrase_labels = glue_phrases()
train_sents, train_sent_labels = sst_sentences("train")
dev_sents, dev_labels = sst_sentences("dev")
texts = pretraining_texts(args.max_len - 2, phrases)
if args.quick:
    texts = texts[:: max(1, len(texts) // 2000)]
if args.tokenizer == "word":
    tok = WordTokenizer.train(texts, min_count=2)
else:
    tok = BPEWords.train(texts, args.bpe_vocab)
log(
    f"pretraining text: {len(texts):,} sequences, {sum(map(len, texts)):,} words; "
    f"{args.tokenizer} tokenizer, {tok.vocab_size:,} ids"
)
pre_ids = [tok.encode(t, args.max_len) for t in texts]
order = rng.permutation(len(pre_ids))
n_val = 200 if args.quick else 1000  # held out to follow the masked-LM loss
val_pre, pre_ids = [pre_ids[i] for i in order[:n_val]], [pre_ids[i] for i in order[n_val:]]
ft_texts, ft_labels = {
    "glue": (phrases, phrase_labels),
    "sentences": (train_sents, train_sent_labels),
    "both": (phrases + train_sents, phrase_labels + train_sent_labels),
}[args.finetune_data]
train_set = encode_set(tok, ft_texts, ft_labels, args.max_len)
dev_set = encode_set(tok, dev_sents, dev_labels, args.max_len)
log(f"fine-tuning: {len(train_set):,} examples ({args.finetune_data}); dev: {len(dev_set)}")

config = BertConfig(
    vocab_size=tok.vocab_size,
    hidden_size=args.hidden,
    num_hidden_layers=args.layers,
    num_attention_heads=args.heads,
    intermediate_size=4 * args.hidden,
    max_position_embeddings=args.max_len,
    pad_token_id=tok.pad_id,
)
common = dict(pad_id=tok.pad_id, batch_size=args.batch_size, log=log)
results, curves = {}, {}


def report(name, model, curve, seconds):
    pred = predict(model, dev_set.ids, tok.pad_id)
    s = binary_scores(dev_labels, pred)
    results[name] = dict(
        accuracy=s.accuracy,
        f1=s.f1,
        precision=s.precision,
        recall=s.recall,
        confusion=s.matrix.tolist(),
        seconds=seconds,
        parameters=sum(q.numel() for q in model.parameters()),
    )
    curves[name] = curve
    log(f"== {name}: dev accuracy {s.accuracy:.4f}, F1 {s.f1:.4f} ({seconds:.0f} s)")


# ---- stage 1: masked-LM pretraining -----------------------------------------------------------
mlm = BertForMaskedLM(config)
log(f"\n== pretraining: BERT {args.layers}x{args.hidden}, {args.pretrain_steps} steps ==")
pre_curve = pretrain_mlm(
    mlm,
    pre_ids,
    tok,
    steps=args.pretrain_steps,
    batch_size=args.pretrain_batch,
    lr=args.pretrain_lr,
    rng=rng,
    val_seqs=val_pre,
    eval_every=max(1, args.pretrain_steps // (3 if args.quick else 20)),
    log=log,
)
mlm.save_pretrained(out / "pretrained")  # a Hugging Face folder: config.json + safetensors

# ---- stage 2: fine-tuning, and the same model from scratch ------------------------------------
log("\n== fine-tuning the pretrained BERT ==")
tt.manual_seed(args.seed + 1)
bert = Classifier.from_pretrained(out / "pretrained", num_labels=2).train()
t0 = time.perf_counter()
groups = body_lr_groups(bert, ("classifier", "bert.pooler"), args.lr, args.body_lr, 0.01)
curve = finetune(bert, train_set, dev_set, epochs=args.epochs, param_groups=groups, rng=rng,
                 name="pretrained", **common)  # fmt: skip
report("BERT, pretrained", bert, curve, time.perf_counter() - t0 + pre_curve.seconds)
bert.save_pretrained(model_dir)
tok.save(model_dir / "tokenizer.json")
meta = {"max_len": args.max_len, "pool": args.pool}
(model_dir / "chapter09.json").write_text(json.dumps(meta) + "\n")

if not args.skip_baselines:
    log("\n== the same BERT from scratch (no pretraining) ==")
    tt.manual_seed(args.seed + 1)
    scratch = Classifier(config, num_labels=2)
    t0 = time.perf_counter()
    curve = finetune(scratch, train_set, dev_set, epochs=args.epochs, rng=rng, name="scratch",
                     param_groups=[{"params": list(scratch.parameters()), "lr": args.lr}],
                     **common)  # fmt: skip
    report("BERT, from scratch", scratch, curve, time.perf_counter() - t0)

    log("\n== chapter 05's LSTM, bidirectional ==")
    tt.manual_seed(args.seed + 1)
    lstm = BiLSTMClassifier(tok.vocab_size, embed=128, hidden=128, pad_id=tok.pad_id)
    t0 = time.perf_counter()
    curve = finetune(lstm, train_set, dev_set, epochs=args.lstm_epochs, rng=rng, name="bilstm",
                     param_groups=[{"params": list(lstm.parameters()), "lr": args.lstm_lr}],
                     **common)  # fmt: skip
    report("BiLSTM", lstm, curve, time.perf_counter() - t0)

if args.gpt:
    from gpt_compare import pretrain_and_finetune_gpt

    name, model, curve, seconds, gpt_pre = pretrain_and_finetune_gpt(
        args, tok, pre_ids, val_pre, train_set, dev_set, rng, common
    )
    report(name, model, curve, seconds)
    curves["GPT pretraining"] = gpt_pre

# ---- figures ----------------------------------------------------------------------------------
fig, ax = plt.subplots(figsize=(7, 4))
k = max(1, min(50, len(pre_curve.loss) // 10))
ax.plot(np.arange(k, len(pre_curve.loss) + 1), smooth(pre_curve.loss, k), label="train (smoothed)")
ax.plot(pre_curve.eval_steps, pre_curve.eval_values, "o-", ms=3, label="held-out")
if "GPT pretraining" in curves:
    g = curves.pop("GPT pretraining")
    ax.plot(g.eval_steps, g.eval_values, "s-", ms=3, label="GPT next-token, held-out")
ax.set(xlabel="step", ylabel="cross-entropy (nats)", title="masked-LM pretraining")
ax.legend()
fig.tight_layout()
fig.savefig(out / "pretraining.png", dpi=120)

fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
for name, c in curves.items():
    k = max(1, min(100, len(c.loss) // 10))
    a1.plot(np.arange(k, len(c.loss) + 1), smooth(c.loss, k), label=name)
    a2.plot(c.eval_steps, c.eval_values, "o-", ms=3, label=name)
a1.set(xlabel="step", ylabel="train loss (smoothed)", title="fine-tuning on SST-2")
a2.set(xlabel="step", ylabel="dev accuracy", title="stsa.binary.dev (872 sentences)")
a2.axhline(0.86, color="gray", ls=":", lw=1)
a1.legend()
a2.legend()
fig.tight_layout()
fig.savefig(out / "finetuning.png", dpi=120)

best = max(results, key=lambda n: results[n]["accuracy"])
cm = np.array(results[best]["confusion"])
fig, ax = plt.subplots(figsize=(4.2, 3.8))
ax.imshow(cm, cmap="Blues")
for (i, j), v in np.ndenumerate(cm):
    ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "k")
ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["neg", "pos"], yticklabels=["neg", "pos"])
ax.set(xlabel="predicted", ylabel="true", title=f"{best}: dev confusion matrix")
fig.tight_layout()
fig.savefig(out / "confusion.png", dpi=120)

# ---- summary ----------------------------------------------------------------------------------
total = time.perf_counter() - t_start
log(f"\n{'model':<22} {'accuracy':>9} {'F1':>7} {'seconds':>8}")
for name, r in results.items():
    log(f"{name:<22} {r['accuracy']:>9.4f} {r['f1']:>7.4f} {r['seconds']:>8.0f}")
log(
    f"best: {best} ({results[best]['accuracy']:.4f}); whole run {total:.0f} s; model in {model_dir}"
)
metrics = dict(
    results=results,
    best=best,
    seconds=total,
    pretrain=dict(
        steps=args.pretrain_steps,
        final_heldout_loss=pre_curve.eval_values[-1] if pre_curve.eval_values else None,
        seconds=pre_curve.seconds,
    ),
    config=vars(args) | {"out": str(out), "vocab_size": tok.vocab_size},
    curves={n: dict(steps=c.eval_steps, dev_accuracy=c.eval_values) for n, c in curves.items()},
)
(out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")

if args.record:
    columns = ["model", "dev accuracy", "dev F1", "seconds", "parameters"]
    rows = [
        dict(zip(columns, [n, r["accuracy"], r["f1"], round(r["seconds"]), r["parameters"]]))
        for n, r in results.items()
    ]
    record(
        "finetuning_ch09",
        "cpu",
        columns,
        rows,
        notes=(
            f"SST-2 dev (stsa.binary.dev, 872 sentences). Fine-tuned on {args.finetune_data} "
            f"({len(train_set):,} examples); BERT {args.layers} layers x {args.hidden}, "
            f"{args.tokenizer} vocabulary of {tok.vocab_size:,}, masked-LM pretraining "
            f"{args.pretrain_steps} steps of {args.pretrain_batch} "
            f"(held-out loss {metrics['pretrain']['final_heldout_loss']:.3f}). "
            f"Whole run {total:.0f} s. Seconds of 'BERT, pretrained' include pretraining."
        ),
        extra=metrics,
        figures=[out / "pretraining.png", out / "finetuning.png", out / "confusion.png"],
    )
