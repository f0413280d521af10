"""Chapter 06's task and model: reverse a sequence of digits with one attention layer.

    x (B, T) random digits  ->  y = x reversed: output i must copy input T - 1 - i

Which digit goes where does not depend on the digits, only on positions, so the task is pure
"where to look": the query of position i must match the key of position T - 1 - i.
"""

from __future__ import annotations

import tinytorch as tt
from tinytorch import nn
from tinytorch.nn import functional as F

N_DIGITS = 10


class Reverser(nn.Module):
    """tokens (B, T) -> logits (B, T, 10); also returns the attention weights (B, h, T, T).

    Embedding + learned positions, one nn.MultiheadAttention, a residual MLP, a linear head.
    """

    def __init__(self, seq_len: int, d_model: int = 32, heads: int = 2):
        super().__init__()
        self.tok = nn.Embedding(N_DIGITS, d_model)
        self.pos = nn.LearnedPositionalEmbedding(seq_len, d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.ln = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.ReLU(), nn.Linear(4 * d_model, d_model)
        )
        self.head = nn.Linear(d_model, N_DIGITS)

    def forward(self, tokens):
        x = self.pos(self.tok(tokens))  # what each digit is + where it is
        a, weights = self.attn(x, x, x, need_weights=True, average_attn_weights=False)
        x = x + a  # the residual keeps the position signal next to what was gathered
        x = x + self.mlp(self.ln(x))
        return self.head(x), weights


def batch(rng, n, seq_len):
    """n random digit sequences (n, seq_len) and their reversals, as int64 tensors."""
    x = rng.integers(0, N_DIGITS, (n, seq_len))
    return tt.tensor(x), tt.tensor(x[:, ::-1].copy())


def loss_fn(model, batch):
    """Mean cross-entropy of the predicted digits (the model also returns its weights)."""
    x, y = batch
    logits, _ = model(x)
    return F.cross_entropy(logits.reshape(-1, N_DIGITS), y.reshape(-1))


def accuracy(model, rng, seq_len, n=1000):
    """(per-digit, per-sequence) accuracy on n fresh sequences, in eval mode."""
    model.eval()
    with tt.no_grad():
        x, y = batch(rng, n, seq_len)
        logits, _ = model(x)
        pred = logits.argmax(-1).numpy()
    model.train()
    tok = (pred == y.numpy()).mean()
    seq = (pred == y.numpy()).all(axis=1).mean()
    return float(tok), float(seq)
