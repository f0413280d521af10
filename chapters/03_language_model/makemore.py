"""The chapter's three language models of names, and what they share (data, sampling).

A name is a sequence of characters closed by "." (which also stands for "the start"): the
model's job is p(next character | the characters before it). Three answers:

    CountBigram   count how often b follows a in the training names; p(b | a) = count / row
    NeuralBigram  the same table, as a linear layer on one-hot inputs, learned by gradient
                  descent on the cross-entropy
    MLPLM         Bengio et al. (2003): embed the last `block_size` characters, concatenate,
                  a tanh hidden layer, a softmax over the next character
"""

from __future__ import annotations

import random

import numpy as np

import tinytorch as tt
from tinytorch import nn
from tinytorch.data import dataset_path
from tinytorch.nn import functional as F

END = "."  # index 0: the boundary token (end of a name, and the context before its start)


def load_words() -> list[str]:
    """The 32,032 makemore names (one lowercase name per line)."""
    return dataset_path("names").read_text(encoding="utf-8").split()


def vocabulary(words):
    """itos: index -> character ("." first, then a-z), stoi: its inverse."""
    itos = [END] + sorted(set("".join(words)))
    return itos, {c: i for i, c in enumerate(itos)}


def split_words(words, seed: int = 42):
    """Shuffle the names with Python's random (seed 42, as in the makemore lectures) and cut
    80% / 10% / 10% into train / val / test. Splitting by name, not by example, keeps every
    character of a validation name out of training."""
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def build_dataset(words, stoi, block_size: int):
    """Every (context, next character) pair: X (N, block_size) int64, Y (N,) int64.

    "emma" with block_size 3 gives ... -> e, ..e -> m, .em -> m, emm -> a, mma -> ."""
    xs, ys = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + END:
            ix = stoi[ch]
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    return np.array(xs, dtype=np.int64).reshape(len(xs), block_size), np.array(ys, np.int64)


class CountBigram:
    """p(b | a) from counts, with add-`alpha` smoothing so no probability is exactly zero."""

    def __init__(self, vocab_size: int, alpha: float = 1.0):
        self.counts = np.zeros((vocab_size, vocab_size), dtype=np.int64)
        self.alpha = alpha

    def fit(self, x, y):
        np.add.at(self.counts, (x, y), 1)  # one count per (previous, next) pair
        smoothed = self.counts + self.alpha
        self.probs = smoothed / smoothed.sum(axis=1, keepdims=True)
        return self

    def nll(self, x, y) -> float:
        """Mean negative log-likelihood (the cross-entropy, in nats per character)."""
        return float(-np.log(self.probs[x, y]).mean())

    def next_probs(self, context):
        return self.probs[context[-1]]


class NeuralBigram(nn.Module):
    """logits = onehot(a) @ W^T: the one-hot row picks column a of W^T, so W holds a table of
    log-counts, learned instead of counted (nn.Embedding(V, V) does the same lookup without
    building the one-hot matrix; chapter 03's MLP uses that)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.W = nn.Linear(vocab_size, vocab_size, bias=False)

    def forward(self, xenc):
        """xenc (B, V) one-hot rows of the previous characters -> logits (B, V)."""
        return self.W(xenc)

    @staticmethod
    def encode(idx, vocab_size: int):
        """int64 ids (B,) -> float32 one-hot rows (B, V), built once before training."""
        return F.one_hot(tt.tensor(idx), vocab_size).float()


class MLPLM(nn.Module):
    """Bengio et al. (2003): embeddings of the previous block_size characters, concatenated,
    through a tanh layer, to logits over the next character."""

    def __init__(self, vocab_size: int, block_size: int = 3, n_embd: int = 10, n_hidden: int = 200):
        super().__init__()
        self.block_size = block_size
        self.emb = nn.Embedding(vocab_size, n_embd)  # C in the paper: one vector per character
        self.hidden = nn.Linear(block_size * n_embd, n_hidden)
        self.act = nn.Tanh()
        self.out = nn.Linear(n_hidden, vocab_size)

    def forward(self, idx):
        """idx (B, block_size) -> logits (B, vocab_size)."""
        e = self.emb(idx)  # (B, block_size, n_embd)
        h = self.act(self.hidden(e.reshape(e.shape[0], -1)))  # (B, n_hidden)
        return self.out(h)

    @tt.no_grad()
    def next_probs(self, context):
        logits = self(tt.tensor([context]))
        return F.softmax(logits, dim=-1).numpy()[0].astype(np.float64)


class _BigramSampler:
    """Wraps a NeuralBigram for sampling (the context is only the last character)."""

    def __init__(self, model):
        self.model = model

    @tt.no_grad()
    def next_probs(self, context):
        logits = self.model(NeuralBigram.encode([context[-1]], self.model.vocab_size))
        return F.softmax(logits, dim=-1).numpy()[0].astype(np.float64)


def sampler(model):
    return _BigramSampler(model) if isinstance(model, NeuralBigram) else model


def sample(model, itos, n: int, block_size: int, seed: int = 0, max_len: int = 30):
    """Draw n names: start from the all-"." context, draw the next character from the
    model's distribution, slide the context, stop at "."."""
    gen = np.random.default_rng(seed)
    names = []
    for _ in range(n):
        context, out = [0] * block_size, []
        for _ in range(max_len):
            p = model.next_probs(context)
            ix = int(gen.choice(len(p), p=p / p.sum()))
            if ix == 0:
                break
            out.append(itos[ix])
            context = context[1:] + [ix]
        names.append("".join(out))
    return names
