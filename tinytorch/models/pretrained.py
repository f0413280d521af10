"""Published weights: Hugging Face model folders in and out (chapter 09).

A Hugging Face model folder holds `config.json` (the hyperparameters) and `model.safetensors`
(name -> array). Loading one into a tinytorch model is three steps:

1. `resolve(path_or_name)` (tinytorch.models.hub): a folder on disk, or a name ("gpt2",
   "bert-base-uncased", or any hub repository id) looked up in `<tinytorch cache>/pretrained/
   <name>/`, then downloaded from the Hugging Face hub into its cache (huggingface_hub, the
   `pretrained` extra) and checked: the hub stores each file under its hash, and the bytes
   must have that hash. Offline, or without huggingface_hub, the error says which files to
   put in which folder.
2. `read_folder(folder)`: the config dict and the arrays (safetensors only: never a pickle).
3. `rename_state_dict`: the checkpoint's names -> the model's. Checkpoints differ from the
   model in small ways: old TensorFlow-era BERT files call LayerNorm's parameters gamma and
   beta; a base model's file has no "bert." / "transformer." prefix while a model with a head
   has one (and the other way round); GPT-2 stores its linear layers as Conv1D, whose weight
   is (in, out), the transpose of Linear's (out, in) - nanoGPT transposes those four.

Then `load_pretrained_state` copies the arrays in and says what does not fit: a missing
weight is an error unless it is tied to another one or belongs to a new head (a classifier
that fine-tuning trains from scratch); leftover pretraining heads are dropped.

`PretrainedMixin` gives the BERT classes `from_pretrained(path_or_name, **overrides)` and
`save_pretrained(folder)` (config.json + model.safetensors with Hugging Face's names, written
atomically, loadable by `transformers`' from_pretrained). `gpt_from_pretrained` and
`gpt_save_pretrained` are behind `GPT.from_pretrained` / `save_pretrained` and the GPT
classifier's.

Manual check with the real GPT-2 (online; `python -m tinytorch.models.pretrained --check gpt2
"prompt"`, see `main` below): tinytorch's greedy continuation equals transformers'.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

from .hub import FILES, HUB_NAMES, pretrained_cache, read_folder, resolve  # noqa: F401

__all__ = [
    "HUB_NAMES",
    "PretrainedMixin",
    "resolve",
    "read_folder",
    "rename_state_dict",
    "load_pretrained_state",
    "gpt_from_pretrained",
    "CONV1D_WEIGHTS",
]

# GPT-2's Conv1D layers: weight (in, out), to transpose into Linear's (out, in)
CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
# checkpoint entries that are not weights of our models: BERT's next-sentence head and
# position-id buffers, GPT-2's stored causal masks (recomputed here)
IGNORED = re.compile(
    r"(^|\.)(position_ids|attn\.bias|attn\.masked_bias)$|^cls\.seq_relationship\.|(^|\.)pooler\."
)


# ---- names --------------------------------------------------------------------------------
def rename_state_dict(state: dict, model_keys, prefix: str, transpose=()) -> dict:
    """A checkpoint's {name: array} renamed to the model's keys.

    prefix: the base model's prefix in models with heads ("bert.", "transformer."); each name
    gets it added or removed when that makes it one of `model_keys`. LayerNorm.gamma/beta
    become LayerNorm.weight/bias. Weights whose name ends with one of `transpose` are
    transposed (GPT-2's Conv1D). Names that match nothing are kept as they are (the caller
    reports them).
    """
    model_keys = set(model_keys)
    out = {}
    for name, arr in state.items():
        # BEGIN EXERCISE ch09: rename_state_dict - gamma/beta, add/drop prefix, transpose Conv1D
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        if name not in model_keys:
            if prefix + name in model_keys:
                name = prefix + name
            elif name.startswith(prefix) and name[len(prefix) :] in model_keys:
                name = name[len(prefix) :]
        if transpose and name.endswith(tuple(transpose)):
            arr = arr.T
        # END EXERCISE
        out[name] = arr
    return out


def load_pretrained_state(model, state: dict, prefix: str, transpose=(), new=(), tied=()):
    """Rename `state` for `model` and load it. Missing keys are an error unless listed in
    `tied` (they share a Parameter that is loaded) or start with one of `new` (a head trained
    from scratch, left as initialized); unexpected keys are an error unless they are known
    leftovers (IGNORED, or a head this model does not have). Returns the new keys."""
    keys = list(model.state_dict())
    state = rename_state_dict(state, keys, prefix, transpose)
    own = set(keys)
    missing = [k for k in keys if k not in state and k not in tied]
    new_keys = [k for k in missing if k.startswith(tuple(new))]
    missing = [k for k in missing if k not in new_keys]
    heads = {k.split(".")[0] for k in own}  # the top-level modules this model has
    unexpected = [
        k
        for k in state
        if k not in own and not IGNORED.search(k) and k.split(".")[0] in heads | {""}
    ]
    if missing or unexpected:
        raise RuntimeError(
            f"{type(model).__name__}: the checkpoint does not fit: missing "
            f"{missing[:8] or 'nothing'}, unexpected {unexpected[:8] or 'nothing'}"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return new_keys


def _split_overrides(config_cls, config: dict, overrides: dict, ctor: tuple):
    """Overrides of config fields go into the config dict, constructor arguments aside."""
    names = {f.name for f in fields(config_cls)}
    kwargs = {}
    for k, v in overrides.items():
        if k in names:
            config[k] = v
        elif k in ctor:
            kwargs[k] = v
        else:
            raise TypeError(
                f"from_pretrained: unknown override {k!r}; expected a {config_cls.__name__} "
                f"field or one of {list(ctor)}"
            )
    return kwargs


def _write_folder(folder, config: dict, arrays: dict) -> None:
    from ..serialization import save
    from ..text.files import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save(arrays, folder / "model.safetensors")  # atomic, safetensors, Hugging Face's names
    atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")


class PretrainedMixin:
    """from_pretrained / save_pretrained for models with a `config` (BertConfig-like:
    from_dict, to_dict). Class attributes: config_class, hub_prefix (the base model's prefix
    in checkpoints with heads), model_type, tied_keys (left out of saved files, tied again on
    load), new_heads (prefixes of heads a checkpoint may lack), ctor_args."""

    config_class = None
    hub_prefix = "bert."
    model_type = "bert"
    tied_keys: tuple = ()
    # a pooler or classifier the checkpoint lacks starts from BERT's initialization (as in
    # transformers, e.g. a masked-LM checkpoint, which has no pooler, under a classifier)
    new_heads: tuple = ("classifier.", "pooler.", "bert.pooler.")
    ctor_args: tuple = ("num_labels", "add_pooling_layer")

    @classmethod
    def from_pretrained(cls, path_or_name, **overrides):
        """The model from a Hugging Face folder or hub name, in eval mode (as transformers).
        overrides: config fields (e.g. hidden_dropout_prob=0.2) or constructor arguments
        (num_labels=3); a new classification head starts from BERT's initialization."""
        config, state = read_folder(resolve(path_or_name))
        kwargs = _split_overrides(cls.config_class, config, overrides, cls._ctor(config))
        if "num_labels" in cls._ctor(config) and "num_labels" not in kwargs:
            labels = config.get("id2label")
            kwargs["num_labels"] = len(labels) if labels else config.get("num_labels", 2)
        model = cls(cls.config_class.from_dict(config), **kwargs)
        load_pretrained_state(model, state, cls.hub_prefix, new=cls.new_heads, tied=cls.tied_keys)
        return model.eval()

    @classmethod
    def _ctor(cls, config) -> tuple:
        import inspect

        return tuple(p for p in inspect.signature(cls.__init__).parameters if p in cls.ctor_args)

    def save_pretrained(self, folder) -> None:
        """config.json + model.safetensors in `folder` (created), each written atomically;
        tied copies are left out, as transformers does (it ties them again on load)."""
        w = next(iter(self.parameters()))
        config = {
            **self.config.to_dict(),
            "model_type": self.model_type,
            "architectures": [type(self).__name__],
            "dtype": str(w.dtype),
        }
        n = getattr(self, "num_labels", None)
        if n is not None:
            config["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
            config["label2id"] = {f"LABEL_{i}": i for i in range(n)}
        arrays = {k: v.data for k, v in self.state_dict().items() if k not in self.tied_keys}
        _write_folder(folder, config, arrays)


# ---- GPT-2 ----------------------------------------------------------------------------------
def gpt_config_from_hf(config: dict, overrides: dict):
    """GPTConfig from GPT-2's config.json (n_embd, n_layer, n_head, n_positions, vocab_size)."""
    from .gpt import GPTConfig

    names = {"n_embd", "n_layer", "n_head", "n_positions", "vocab_size"}
    missing = sorted(names - set(config))
    if missing:
        raise ValueError(f"GPT-2 config.json: missing {missing} (is this a GPT-2 folder?)")
    args = dict(
        block_size=config["n_positions"],
        vocab_size=config["vocab_size"],
        n_layer=config["n_layer"],
        n_head=config["n_head"],
        n_embd=config["n_embd"],
        bias=True,
        dropout=0.0,
    )
    for k, v in overrides.items():
        if k not in {f.name for f in fields(GPTConfig)}:
            raise TypeError(f"from_pretrained: unknown override {k!r}; expected a GPTConfig field")
        args[k] = v
    return GPTConfig(**args)


def _gpt2_activation(model, config: dict) -> None:
    """GPT-2 uses GELU's tanh approximation ("gelu_new"), nanoGPT's GELU is exact: set it."""
    act = config.get("activation_function", "gelu_new")
    approximate = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}.get(act)
    if approximate is None:
        raise ValueError(f"GPT-2 config.json: activation_function {act!r} is not supported")
    eps = config.get("layer_norm_epsilon", 1e-5)
    for name, m in model.named_modules():
        if name.endswith("mlp.gelu"):
            m.approximate = approximate
        elif hasattr(m, "normalized_shape"):
            m.eps = eps


def gpt_from_pretrained(cls, path_or_name, new=(), **overrides):
    """cls(GPTConfig) with GPT-2's weights (`GPT` or `GPTForSequenceClassification`; other
    constructor arguments of the latter come in overrides)."""
    config, state = read_folder(resolve(path_or_name))
    extra = {k: overrides.pop(k) for k in ("num_labels", "pad_token_id") if k in overrides}
    if "num_labels" in extra or "pad_token_id" in extra or new:
        extra.setdefault("num_labels", len(config.get("id2label") or {}) or 2)
        pad = config.get("pad_token_id")
        extra.setdefault("pad_token_id", config.get("eos_token_id", 50256) if pad is None else pad)
    model = cls(gpt_config_from_hf(config, overrides), **extra)
    _gpt2_activation(model, config)
    load_pretrained_state(
        model, state, "transformer.", CONV1D_WEIGHTS, new=new, tied=("lm_head.weight",)
    )
    return model.eval()


def gpt_save_pretrained(model, folder) -> None:
    """A GPT (or GPTForSequenceClassification) as a Hugging Face GPT-2 folder: config.json and
    model.safetensors with the Conv1D weights transposed back; transformers' GPT2LMHeadModel
    (GPT2ForSequenceClassification) loads it."""
    c = model.config
    if not c.bias:
        raise ValueError("save_pretrained: GPT-2's format has biases; this GPT has bias=False")
    gelus = {m.approximate for n, m in model.named_modules() if n.endswith("mlp.gelu")}
    config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "activation_function": "gelu_new" if gelus == {"tanh"} else "gelu",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "layer_norm_epsilon": model.transformer.ln_f.eps,
        "tie_word_embeddings": True,
    }
    n = getattr(model, "num_labels", None)
    if n is not None:
        config["architectures"] = ["GPT2ForSequenceClassification"]
        config["pad_token_id"] = model.pad_token_id
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(n)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(n)}
    arrays = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":  # tied to transformer.wte.weight
            continue
        arrays[k] = v.data.T.copy() if k.endswith(CONV1D_WEIGHTS) else v.data
    _write_folder(folder, config, arrays)


# ---- the manual check with the real GPT-2 --------------------------------------------------
def main(argv=None) -> int:
    """The manual check with the real GPT-2 (the tests cannot download it):

        pip install 'tinytorch[pretrained]' transformers torch
        python -m tinytorch.models.pretrained --check gpt2 "The meaning of life is" --tokens 20

    1. `GPT.from_pretrained("gpt2")` downloads config.json and model.safetensors (548 MB) from
       https://huggingface.co/openai-community/gpt2 into the Hugging Face cache, checks their
       hashes and loads them (offline: put both files in pretrained_cache()/gpt2/, or pass
       --check with any folder that holds them).
    2. Chapter 02's GPT2Tokenizer encodes the prompt (the same ids as tiktoken's "gpt2").
    3. tinytorch greedy-decodes --tokens tokens (tinytorch.generate.generate, do_sample=False,
       with the KV cache); transformers' GPT2LMHeadModel does the same from the same folder.
    4. Both continuations are printed; exit status 0 when the token ids are identical.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tinytorch.models.pretrained")
    ap.add_argument("--check", metavar="NAME", required=True, help="gpt2 or a GPT-2 folder")
    ap.add_argument("prompt")
    ap.add_argument("--tokens", type=int, default=20)
    args = ap.parse_args(argv)

    import torch
    from transformers import GPT2LMHeadModel

    import tinytorch as tt
    from tinytorch.generate import generate
    from tinytorch.models import GPT
    from tinytorch.text import GPT2Tokenizer

    tok = GPT2Tokenizer.from_data_dir()  # chapter 02's GPT-2 vocabulary (the course data)
    ids = tok.encode(args.prompt)
    folder = resolve(args.check)
    model = GPT.from_pretrained(folder)
    out = generate(model, tt.tensor([ids], dtype="int64"), args.tokens, do_sample=False)
    ours = [int(t) for t in out.numpy()[0]]
    ref = GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs = ref.generate(
            torch.tensor([ids]), max_new_tokens=args.tokens, do_sample=False, pad_token_id=50256
        )[0].tolist()
    print("tinytorch:   ", repr(tok.decode(ours)))
    print("transformers:", repr(tok.decode(theirs)))
    same = ours == theirs
    print("same greedy continuation" if same else "DIFFERENT continuations")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
