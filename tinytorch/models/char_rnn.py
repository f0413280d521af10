"""A character-level language model on a recurrent stack (chapters 04 and 05).

    ids (B, T) -> Embedding -> RNN | LSTM | GRU (batch_first) -> Linear -> logits (B, T, V)

It is trained with truncated backpropagation through time: `tinytorch.data.windows` cuts the
text into consecutive windows and `tinytorch.train.TBPTTLoss` carries the state from one window
to the next; `hidden_grad_norms` measures how far back through time the gradient reaches.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, nn
from ..autograd import no_grad
from ..generate import sample as sample_next
from ..nn import functional as F
from ..nn.rnn_cells import gru_cell, lstm_cell, rnn_cell
from ..tensor import Tensor

__all__ = ["CharRNN", "sample"]

_STACKS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class CharRNN(nn.Module):
    """Embedding (V, E) -> `cell` stack (E -> H, num_layers) -> Linear (H -> V).

    Parameter names (`embedding.weight`, `rnn.weight_ih_l0`, `head.weight`, ...) are those of
    the same model written with torch.nn, so the two load each other's state_dict.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        hidden_size: int = 256,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.0,
        device="cpu",
        dtype=None,
    ):
        super().__init__()
        if cell not in _STACKS:
            raise ValueError(f"CharRNN: cell must be one of {sorted(_STACKS)}, got {cell!r}")
        self.cell, self.vocab_size = cell, vocab_size
        self.embedding = nn.Embedding(vocab_size, embed_dim, device=device, dtype=dtype)
        self.rnn = _STACKS[cell](
            embed_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout,
            device=device,
            dtype=dtype,
        )
        self.head = nn.Linear(hidden_size, vocab_size, device=device, dtype=dtype)

    def forward(self, idx: Tensor, state=None):
        """idx (B, T) int64, state from the previous window or None -> logits (B, T, V), state
        (h_n, or (h_n, c_n) for the LSTM, each (num_layers, B, H))."""
        if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.kind not in "iu":
            shape = tuple(idx.shape) if hasattr(idx, "shape") else type(idx).__name__
            raise ValueError(
                f"CharRNN: expected int64 character ids of shape (B, T), got "
                f"shape {shape}" + (f" and dtype {idx.dtype}" if hasattr(idx, "dtype") else "")
            )
        out, state = self.rnn(self.embedding(idx), state)
        B, T, H = out.shape
        # the head on (B*T, H) rows: one 2-D matmul (and one for its weight gradient)
        return self.head(out.reshape(B * T, H)).reshape(B, T, -1), state

    def hidden_grad_norms(self, x, y):
        """||dL_T / dh_t|| for every step t and layer: how much the loss at the LAST step still
        depends on the hidden state t steps earlier (the vanishing/exploding gradient picture).

        Runs float64 copies of the model's weights (so that norms of 1e-40 do not underflow to
        zero, as they would in float32) through the step-by-step cell functions, adding a zero
        "probe" leaf to each h_t so that backward leaves dL_T/dh_t in probe.grad. The model itself
        is not touched. x, y: (B, T) ids and targets. Returns a NumPy array (num_layers, T).
        """
        rnn = self.rnn
        if rnn.bidirectional:
            raise ValueError("hidden_grad_norms: unidirectional models only")

        def f64(p):
            return None if p is None else Tensor._wrap(p.data.astype(np.float64))

        h_in = F.embedding(x, f64(self.embedding.weight))  # (B, T, E)
        B, T = x.shape
        zeros = h_in.xp.zeros((B, rnn.hidden_size), dtype=np.float64)
        probes = [
            [Tensor._wrap(zeros.copy(), requires_grad=True) for _ in range(T)]
            for _ in range(rnn.num_layers)
        ]
        states = [
            (Tensor._wrap(zeros), Tensor._wrap(zeros))
            if rnn.mode == "LSTM"
            else Tensor._wrap(zeros)
            for _ in range(rnn.num_layers)
        ]
        weights = [
            [f64(w) for w in rnn._layer_weights(layer, 0)] for layer in range(rnn.num_layers)
        ]
        for t in range(T):
            inp = h_in[:, t]
            for layer, w in enumerate(weights):
                if rnn.mode == "LSTM":
                    h, c = lstm_cell(inp, states[layer], *w)
                    h = h + probes[layer][t]
                    states[layer] = (h, c)
                elif rnn.mode == "GRU":
                    h = states[layer] = gru_cell(inp, states[layer], *w) + probes[layer][t]
                else:
                    nl = "relu" if rnn.mode == "RNN_RELU" else "tanh"
                    h = rnn_cell(inp, states[layer], *w, nonlinearity=nl) + probes[layer][t]
                    states[layer] = h
                inp = h
        logits = F.linear(inp, f64(self.head.weight), f64(self.head.bias))
        F.cross_entropy(logits, y[:, T - 1]).backward()
        return np.array([[math.sqrt(float((p.grad.data**2).sum())) for p in row] for row in probes])


@no_grad()
def sample(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0, top_k=None):
    """Continue each row of `prompt_ids` (B, T0) by max_new_tokens characters -> (B, T0 + n).

    The prompt is read once to build the state, then one character at a time is drawn from
    softmax(logits / temperature) (greedy argmax when temperature == 0), restricted to the
    top_k most likely characters if given: tinytorch.generate.sample, with tinytorch's seeded
    generator.
    """
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    xp = backend.get_xp(device)
    idx = Tensor._wrap(
        xp.asarray(np.asarray(prompt_ids, dtype=np.int64).reshape(len(prompt_ids), -1))
        if not isinstance(prompt_ids, Tensor)
        else prompt_ids.data
    )
    out = [idx.data]
    logits, state = model(idx)
    for _ in range(max_new_tokens):
        nxt = sample_next(logits.data[:, -1, :], temperature, top_k)  # (B,) on the CPU
        nxt = xp.asarray(nxt.astype(np.int64)[:, None])
        out.append(nxt)
        logits, state = model(Tensor._wrap(nxt), state)
    model.train(was_training)
    return Tensor._wrap(xp.concatenate(out, axis=1))
