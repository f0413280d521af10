"""Chapter 10's translation helpers: the tokenizer, the two models' recipes, the loss, saving a
run, translating a list of sentences and scoring them with BLEU.

    tok = train_tokenizer(texts, vocab_size=4000)      one byte-level BPE for both languages
    model = build_model("transformer", tok, RECIPES["transformer"])
    loss_fn = seq2seq_loss(label_smoothing=0.1)         for tinytorch.train
    hyps = translate(model, tok, english_lines, beam_size=4)
    bleu = corpus_bleu(hyps, [refs for _, refs in groups])
    save_model(out, "transformer", model, recipe); load_model(out, "transformer")
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import tinytorch as tt
from tinytorch.models.seq2seq import Seq2SeqRNN, Seq2SeqTransformer, beam_search, greedy_decode
from tinytorch.nn import functional as F
from tinytorch.text import BPETokenizer

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
TOKENIZER_FILE = "tokenizer.json"

# The default run's two models (main.py's flags can change steps and lr). Cost per step is
# what a 15-minute budget on 2 cores buys: d_model 256, 2 + 2 layers, feed-forward 512, no
# dropout (the run sees the data about twice: it underfits, it does not overfit).
RECIPES = {
    "transformer": dict(
        kind="transformer",
        d_model=256,
        nhead=4,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dim_feedforward=512,
        dropout=0.0,
        max_len=64,
        steps=1200,
        max_tokens=3000,
        lr=1e-3,
        warmup=100,
        min_lr=5e-5,
        weight_decay=0.01,
        label_smoothing=0.1,
        clip=1.0,
    ),
    "rnn": dict(
        kind="rnn",
        emb_dim=256,
        hidden_size=256,
        attention="luong",
        dropout=0.0,
        max_len=64,
        steps=600,
        max_tokens=3000,
        lr=2e-3,
        warmup=50,
        min_lr=1e-4,
        weight_decay=0.01,
        label_smoothing=0.1,
        clip=1.0,
    ),
}


# ---- tokenizer --------------------------------------------------------------------------------
def train_tokenizer(texts, vocab_size: int) -> BPETokenizer:
    """One byte-level BPE (chapter 02) learned on English and French together, with the three
    special tokens at the end: <pad>, <s> (begin), </s> (end)."""
    return BPETokenizer.train("\n".join(texts), vocab_size, special_tokens=[PAD, BOS, EOS])


def special_ids(tok: BPETokenizer) -> dict:
    return dict(pad_id=tok.special_tokens[PAD], bos_id=tok.special_tokens[BOS],
                eos_id=tok.special_tokens[EOS])  # fmt: skip


# ---- models -----------------------------------------------------------------------------------
def build_model(tok: BPETokenizer, recipe: dict):
    """The recipe's model over the joint vocabulary. The Transformer shares one embedding
    table between the encoder, the decoder and the output layer (three-way tying, as in
    "Attention Is All You Need"): with one vocabulary, "Tom" or "Boston" is the same token
    on both sides, and the 4000 x 256 table is learned once."""
    V, pad = tok.vocab_size, special_ids(tok)["pad_id"]
    if recipe["kind"] == "transformer":
        return Seq2SeqTransformer(
            V,
            V,
            d_model=recipe["d_model"],
            nhead=recipe["nhead"],
            num_encoder_layers=recipe["num_encoder_layers"],
            num_decoder_layers=recipe["num_decoder_layers"],
            dim_feedforward=recipe["dim_feedforward"],
            dropout=recipe["dropout"],
            pad_id=pad,
            max_len=recipe["max_len"],
            share_embeddings=True,
            tie_weights=True,
        )
    return Seq2SeqRNN(
        V,
        V,
        emb_dim=recipe["emb_dim"],
        hidden_size=recipe["hidden_size"],
        attention=recipe["attention"],
        dropout=recipe["dropout"],
        pad_id=pad,
    )


def num_params(model) -> int:
    """Parameters counted once (a tied table is one parameter)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def seq2seq_loss(label_smoothing: float = 0.0):
    """loss_fn(model, (src, tgt_in, tgt_out)) for tinytorch.train: the mean cross-entropy of
    the next-token predictions over the real target tokens (tgt_out is -100 at padding), with
    label smoothing (the target distribution puts 1 - eps on the right token and spreads eps
    over the vocabulary, so the model is never pushed to infinite confidence)."""

    def loss_fn(model, batch):
        src, tgt_in, tgt_out = batch
        logits = model(src, tgt_in)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            tgt_out.reshape(-1),
            label_smoothing=label_smoothing,
        )

    return loss_fn


# ---- saving and loading -----------------------------------------------------------------------
def save_model(folder: Path, name: str, model, recipe: dict) -> None:
    """folder/name.safetensors (the weights) and folder/name.json (the recipe)."""
    tt.save(model.state_dict(), folder / f"{name}.safetensors")
    (folder / f"{name}.json").write_text(json.dumps(recipe, indent=2))


def load_model(folder: Path, name: str = "transformer"):
    """(model, tokenizer) saved by a default run in `folder`; a clear error if there is none."""
    weights, recipe, tok_file = (
        folder / f"{name}.safetensors",
        folder / f"{name}.json",
        folder / TOKENIZER_FILE,
    )
    missing = [p.name for p in (weights, recipe, tok_file) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} holds no trained {name} ({', '.join(missing)} missing): train one first "
            f"with `python -m tinytorch.course run 10 --out {folder}`, then translate with "
            f"`--translate FILE --out {folder}`"
        )
    tok = BPETokenizer.load(tok_file)
    model = build_model(tok, json.loads(recipe.read_text()))
    model.load_state_dict(tt.load(weights))
    model.eval()
    return model, tok


# ---- translating and scoring ------------------------------------------------------------------
def translate(
    model,
    tok: BPETokenizer,
    sentences,
    *,
    beam_size: int = 4,
    batch_size: int = 200,
    use_cache: bool = True,
    length_penalty: float = 0.6,
) -> list[str]:
    """French for each English sentence (greedy when beam_size is 1). Sentences are decoded
    in batches of similar length (sorted), and returned in their original order."""
    ids = special_ids(tok)
    enc = [tok.encode(s)[: model_max_len(model)] or [ids["eos_id"]] for s in sentences]
    order = np.argsort([len(e) for e in enc], kind="stable")
    out: list = [None] * len(enc)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = [enc[i] for i in idx]
        src = np.full((len(rows), max(map(len, rows))), ids["pad_id"], dtype=np.int64)
        for r, e in enumerate(rows):
            src[r, : len(e)] = e
        # French runs ~1.3x longer than English in tokens; 2x + 10 leaves room
        max_len = min(2 * src.shape[1] + 10, model_max_len(model) - 1)
        kw = dict(bos_id=ids["bos_id"], eos_id=ids["eos_id"], max_len=max_len, use_cache=use_cache)
        if beam_size == 1:
            hyps = greedy_decode(model, tt.tensor(src), **kw)
        else:
            hyps = beam_search(
                model, tt.tensor(src), beam_size=beam_size, length_penalty=length_penalty, **kw
            )
        for i, h in zip(idx, hyps):
            out[i] = tok.decode(h).strip()
    return out


def model_max_len(model) -> int:
    return getattr(model, "max_len", 64)


def bleu(hyps, groups):
    """Corpus BLEU (chapter 08's, sacrebleu's defaults: 13a tokens, exp smoothing) of hyps
    against every reference of each English sentence in groups [(english, [french, ...])]."""
    from tinytorch.metrics import corpus_bleu

    return corpus_bleu(hyps, [refs for _, refs in groups], smooth="exp")
