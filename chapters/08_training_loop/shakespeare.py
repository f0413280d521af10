"""Chapter 08's data and model: tinyshakespeare by character, chapter 07's GPT.

Batches are step-indexed: micro-batch i is drawn from a generator seeded by (seed, i), so the
data position of a run is one integer and a resumed run sees exactly the batches it would
have seen (the Trainer's `batch_fn`). Validation and train-subset evaluations use fixed lists
of batches, so every evaluation of a run scores the same characters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinytorch.data import char_splits
from tinytorch.data.windows import random_windows
from tinytorch.models import GPT, GPTConfig
from tinytorch.text import CharTokenizer


@dataclass
class Corpus:
    train: np.ndarray  # int64 character ids, the first 90% of the text
    val: np.ndarray  # the last 10%
    vocab_size: int
    tokenizer: CharTokenizer


def load_corpus() -> Corpus:
    train, val, tok = char_splits("tinyshakespeare")
    return Corpus(train, val, tok.vocab_size, tok)


def batch_fn(ids, batch_size: int, block_size: int, seed: int):
    """Micro-batch i, for any i, without state: the Trainer's step-indexed data."""

    def get(i: int):
        return random_windows(ids, np.random.default_rng([seed, i]), batch_size, block_size)

    return get


def fixed_batches(ids, n: int, batch_size: int, block_size: int, seed: int) -> list:
    """n batches drawn once: an evaluation set that is the same at every evaluation."""
    rng = np.random.default_rng([seed, 10**9, len(ids)])
    return [random_windows(ids, rng, batch_size, block_size) for _ in range(n)]


def make_gpt(vocab_size: int, n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0):
    """Chapter 07's GPT (no biases, as nanoGPT's CPU recipe)."""
    config = GPTConfig(
        block_size=block_size,
        vocab_size=vocab_size,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        dropout=dropout,
        bias=False,
    )
    return GPT(config)
