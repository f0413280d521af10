"""Chapter 10's model helpers: the recipes, building, saving and loading a model, translating
sentences and scoring them with BLEU.

    recipes = load_recipes()                     recipes.json: both models and the data
    model = build_model("transformer", tok, recipes["transformer"]["model"])
    fr = translate(model, tok, ["I am cold."], beam_size=4)
    score = bleu(fr, [(english, [french, ...]), ...])
    save_model(out, "transformer", model, model_kwargs); load_model(out, "transformer")
"""

from __future__ import annotations

import json
from pathlib import Path

import tinytorch as tt
from tinytorch.data.translation import decode_corpus, special_ids
from tinytorch.metrics import corpus_bleu
from tinytorch.models.seq2seq import Seq2SeqRNN, Seq2SeqTransformer
from tinytorch.text import BPETokenizer

HERE = Path(__file__).resolve().parent
TOKENIZER_FILE = "tokenizer.json"
MAX_LEN = 64  # positions of the Transformer; longer sentences are cut when translating


def load_recipes(path=HERE / "recipes.json") -> dict:
    """The default run's settings (benchmarks/translation_cpu.py reads the same file)."""
    return json.loads(Path(path).read_text())


def build_model(kind: str, tok: BPETokenizer, model_kwargs: dict):
    """A Seq2SeqTransformer ("transformer") or Seq2SeqRNN ("rnn") over the tokenizer's joint
    vocabulary, padding at its <pad> id. The Transformer's recipe shares one embedding table
    between encoder, decoder and output layer (share_embeddings + tie_weights)."""
    V, pad = tok.vocab_size, special_ids(tok)["pad_id"]
    cls = {"transformer": Seq2SeqTransformer, "rnn": Seq2SeqRNN}[kind]
    return cls(V, V, pad_id=pad, **model_kwargs)


def num_params(model) -> int:
    """Parameters counted once (a tied table is one parameter)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_model(folder: Path, kind: str, model, model_kwargs: dict) -> None:
    """folder/KIND.safetensors (the weights) and folder/KIND.json (how to build it)."""
    tt.save(model.state_dict(), folder / f"{kind}.safetensors")
    (folder / f"{kind}.json").write_text(json.dumps(model_kwargs, indent=2))


def load_model(folder: Path, kind: str = "transformer"):
    """(model in eval mode, tokenizer) saved by a run in `folder`; a clear error if none."""
    files = [folder / f"{kind}.safetensors", folder / f"{kind}.json", folder / TOKENIZER_FILE]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} holds no trained {kind} ({', '.join(missing)} missing): train one "
            f"first with `python -m tinytorch.course run 10 --out {folder}`, then translate "
            f"with `python chapters/10_translation/main.py --translate FILE --out {folder}`"
        )
    tok = BPETokenizer.load(files[2])
    model = build_model(kind, tok, json.loads(files[1].read_text()))
    model.load_state_dict(tt.load(files[0]))
    model.eval()
    return model, tok


def translate(model, tok: BPETokenizer, sentences, *, beam_size=4, use_cache=True) -> list:
    """French for each English sentence (greedy when beam_size is 1); "" for an empty one."""
    ids = special_ids(tok)
    max_len = getattr(model, "max_len", MAX_LEN)
    sources = [tok.encode(s.strip())[:max_len] for s in sentences]
    todo = [i for i, s in enumerate(sources) if s]
    outs = decode_corpus(
        model,
        [sources[i] for i in todo],
        beam_size=beam_size,
        max_len=max_len,
        use_cache=use_cache,
        **ids,
    )
    french = [""] * len(sources)
    for i, o in zip(todo, outs):
        french[i] = tok.decode(o).strip()
    return french


def bleu(hyps, groups):
    """Corpus BLEU with sacrebleu's defaults (13a tokens, exp smoothing) of hyps against
    every reference of each English sentence, groups = [(english, [french, ...])]."""
    return corpus_bleu(hyps, [refs for _, refs in groups], smooth="exp")
