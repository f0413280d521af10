"""Text generation from a language model: greedy decoding and sampling (chapter 07).

    generate(model, idx, max_new_tokens, do_sample=True, temperature=1.0, top_k=None,
             top_p=None, num_return_sequences=1, eos_token_id=None, seed=None, use_cache=True)

One step: run the model on the context, take the logits of the last position, turn them into
a distribution over the vocabulary, choose a token, append it. The knobs shape the
distribution, in this order (Hugging Face's):

- temperature T: softmax(logits / T). T < 1 sharpens, T > 1 flattens; T -> 0 is greedy;
- top-k: keep only the k most likely tokens;
- top-p (nucleus): keep the smallest set of most likely tokens whose probability is >= p;
- greedy (do_sample=False or temperature=0): always the most likely token.

The sampling itself runs on the CPU in float64 (one (B, vocab) row per step), from a
generator seeded by `seed` (or tinytorch.manual_seed), so the same seed gives the same text
on either device.

`sample(logits, temperature, top_k, top_p, generator)` is that choice for one step (every
sampler in tinytorch goes through it); `generate` is the loop around it.

A model that offers `make_kv_cache(batch_size)` and accepts `cache=` (tinytorch.models.GPT)
is fed only the new token at each step; others are re-run on the whole (cropped) context.
"""

from __future__ import annotations

import numpy as np

from . import backend, creation
from .autograd import no_grad
from .tensor import Tensor

__all__ = [
    "generate",
    "sample",
    "logits_to_probs",
    "top_k_filter",
    "top_p_filter",
    "sample_from_probs",
]


def _host(logits) -> np.ndarray:
    a = logits.data if isinstance(logits, Tensor) else logits
    return np.asarray(backend.to_device(a, "cpu"), dtype=np.float64)


def top_k_filter(logits, k: int) -> np.ndarray:
    """Logits (B, V) with every entry below the k-th largest of its row set to -inf (ties with
    the k-th are kept, as in nanoGPT and Hugging Face)."""
    x = _host(logits)
    if not 1 <= k:
        raise ValueError(f"top_k must be a positive integer, got {k}")
    k = min(k, x.shape[-1])
    # BEGIN EXERCISE ch07: temperature_top_k - top-k: -inf below each row's k-th largest
    kth = np.partition(x, -k, axis=-1)[..., -k, None]  # the k-th largest of each row, (B, 1)
    out = np.where(x < kth, -np.inf, x)
    # END EXERCISE
    return out


def top_p_filter(logits, p: float) -> np.ndarray:
    """Logits (B, V) with -inf outside each row's nucleus: the smallest set of most likely
    tokens whose total probability is >= p (the most likely token is always kept)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    x = _host(logits)
    # BEGIN EXERCISE ch07: top_p - keep the most likely tokens until their mass reaches p
    order = np.argsort(-x, axis=-1, kind="stable")  # most likely first
    probs = _softmax(np.take_along_axis(x, order, axis=-1))
    before = np.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above each one
    drop_sorted = before >= p  # the set is already complete without this token
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    out = np.where(drop, -np.inf, x)
    # END EXERCISE
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def logits_to_probs(logits, temperature: float = 1.0, top_k=None, top_p=None) -> np.ndarray:
    """The sampling distribution (B, V), float64 on the CPU: temperature, then top-k, then
    top-p, then softmax."""
    if temperature <= 0:
        raise ValueError(
            f"temperature must be > 0 for sampling, got {temperature} (use "
            "do_sample=False for greedy decoding)"
        )
    # BEGIN EXERCISE ch07: temperature_top_k - divide by the temperature, then top-k, then top-p
    x = _host(logits) / temperature
    if top_k is not None:
        x = top_k_filter(x, top_k)
    if top_p is not None and top_p < 1.0:
        x = top_p_filter(x, top_p)
    # END EXERCISE
    return _softmax(x)


def sample_from_probs(probs: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """One token id per row of probs (B, V), by inverting each row's cumulative sum."""
    cdf = np.cumsum(probs, axis=-1)
    u = generator.random(probs.shape[0]) * cdf[:, -1]
    ids = (cdf <= u[:, None]).sum(axis=-1)  # first index whose cdf exceeds u
    return np.minimum(ids, probs.shape[-1] - 1)


def sample(logits, temperature: float = 1.0, top_k=None, top_p=None, generator=None):
    """The next token of each row: logits (B, V) (a Tensor or an array, any device) -> ids (B,)
    int64, a NumPy array.

    temperature == 0 is greedy (each row's argmax); otherwise one draw from
    logits_to_probs(logits, temperature, top_k, top_p). `generator` is a
    numpy.random.Generator (default: tinytorch's seeded CPU generator, tinytorch.manual_seed).
    Every sampler in tinytorch (generate, CharRNN's sample) picks its tokens here.
    """
    if temperature == 0:
        return _host(logits).argmax(axis=-1)
    gen = generator if generator is not None else backend.rng("cpu")
    return sample_from_probs(logits_to_probs(logits, temperature, top_k, top_p), gen)


def _logits_of(out):
    return out[0] if isinstance(out, tuple | list) else out


def generate(
    model,
    idx,
    max_new_tokens: int,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    num_return_sequences: int = 1,
    eos_token_id=None,
    seed=None,
    use_cache: bool = True,
) -> Tensor:
    """Continue each row of idx (B, T) int64 by up to max_new_tokens tokens.

    Returns (B * num_return_sequences, T + n) int64 on idx's device: each prompt repeated
    num_return_sequences times, then its continuation. With eos_token_id, a row that produced
    it is finished (later positions are filled with eos_token_id) and generation stops when
    every row is finished, so n may be < max_new_tokens. The model runs in eval mode (its mode
    is restored afterwards) and without gradients.
    """
    if not isinstance(idx, Tensor):
        idx = creation.tensor(idx, dtype="int64")
    if idx.ndim == 1:
        idx = idx.reshape(1, -1)
    if idx.ndim != 2 or idx.dtype.kind not in "iu" or idx.shape[1] == 0:
        raise ValueError(
            f"generate: idx must be a non-empty (B, T) integer tensor, got shape "
            f"{tuple(idx.shape)} and dtype {idx.dtype}"
        )
    if max_new_tokens < 0 or num_return_sequences < 1:
        raise ValueError(
            f"generate: max_new_tokens must be >= 0 and num_return_sequences >= 1, "
            f"got {max_new_tokens} and {num_return_sequences}"
        )
    temperature = 0.0 if not do_sample else temperature  # 0: greedy
    gen = np.random.default_rng(seed) if seed is not None else backend.rng("cpu")
    device = idx.device
    tokens = np.repeat(_host(idx).astype(np.int64), num_return_sequences, axis=0)  # (B', T)
    B = tokens.shape[0]
    config = getattr(model, "config", None)
    block = getattr(config, "block_size", None)
    cache = model.make_kv_cache(B) if use_cache and hasattr(model, "make_kv_cache") else None
    finished = np.zeros(B, dtype=bool)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            for _ in range(max_new_tokens):
                # BEGIN EXERCISE ch07: generate_loop - crop to block_size, run the model, sample
                n = tokens.shape[1]
                if cache is not None and n <= block:  # feed only what the cache lacks
                    feed = tokens[:, cache.pos :]
                elif cache is not None:  # the window slides: positions shift, recompute
                    cache.reset()
                    feed = tokens[:, -block:]
                else:  # the model reads at most block_size tokens: keep the last ones
                    feed = tokens if block is None else tokens[:, -block:]
                feed_t = Tensor._wrap(backend.to_device(np.ascontiguousarray(feed), device))
                out = model(feed_t, cache=cache) if cache is not None else model(feed_t)
                last = _logits_of(out)[:, -1, :]  # (B', V): the next token's logits
                nxt = sample(last, temperature, top_k, top_p, gen)
                # END EXERCISE
                if eos_token_id is not None:
                    nxt = np.where(finished, eos_token_id, nxt)
                    finished |= nxt == eos_token_id
                tokens = np.concatenate([tokens, nxt[:, None].astype(np.int64)], axis=1)
                if eos_token_id is not None and finished.all():
                    break
    finally:
        model.train(was_training)
    return Tensor._wrap(backend.to_device(tokens, device))
