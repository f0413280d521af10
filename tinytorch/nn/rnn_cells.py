"""One time step of a recurrent network: the cell functions and the cell modules.

`rnn_cell`, `lstm_cell`, `gru_cell` compute one step with tensor ops, so every gate is visible
and autograd derives the backward (chapter 04: the Elman RNN; chapter 05: LSTM and GRU). The
modules `RNNCell`, `LSTMCell`, `GRUCell` hold the weights (PyTorch's names, shapes and
initialization U(-1/sqrt(H), 1/sqrt(H))) and call them, for loops you write yourself. The
stacks that loop over time for you are in rnn.py.

Shapes: x (B, I), h and c (B, H); W_ih (G*H, I), W_hh (G*H, H), biases (G*H,), with G = 1
(RNN), 4 (LSTM, gates i, f, g, o) or 3 (GRU, gates r, z, n), PyTorch's gate order.
"""

from __future__ import annotations

import math

from .. import creation, ops
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "rnn_cell", "lstm_cell", "gru_cell"]


def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh"):
    """Elman RNN step: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh). x (B, I), h (B, H)."""
    # BEGIN EXERCISE ch04: rnn_cell - h' = tanh or relu(x W_ih^T + b_ih + h W_hh^T + b_hh)
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return ops.tanh(pre) if nonlinearity == "tanh" else ops.relu(pre)
    # END EXERCISE


def lstm_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None):
    """LSTM step. x (B, I), state (h, c) each (B, H) -> (h', c'); weights stack the gates
    (4H, .) in PyTorch's order i, f, g, o."""
    h, c = state
    # BEGIN EXERCISE ch05: lstm_cell - the gates i, f, g, o, then c' and h'
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = ops.chunk(gates, 4, dim=1)
    i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
    c = f * c + i * g  # forget part of the old memory, write part of the candidate
    h = o * ops.tanh(c)  # expose part of the memory
    # END EXERCISE
    return h, c


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """GRU step. x (B, I), h (B, H) -> h'; weights stack the gates (3H, .) as r, z, n."""
    # BEGIN EXERCISE ch05: gru_cell - gates r, z, candidate n, h' = (1 - z) * n + z * h
    xr, xz, xn = ops.chunk(F.linear(x, w_ih, b_ih), 3, dim=1)
    hr, hz, hn = ops.chunk(F.linear(h, w_hh, b_hh), 3, dim=1)
    r = ops.sigmoid(xr + hr)  # reset: how much of h feeds the candidate
    z = ops.sigmoid(xz + hz)  # update: keep the old h (z=1) or take the candidate (z=0)
    n = ops.tanh(xn + r * hn)
    return (1 - z) * n + z * h
    # END EXERCISE


def reset_uniform_(module: Module) -> None:
    """PyTorch's recurrent initialization: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
    k = 1.0 / math.sqrt(module.hidden_size)
    for p in module.parameters():
        init.uniform_(p, -k, k)


class _CellBase(Module):
    def __init__(self, input_size, hidden_size, bias, gates, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        dev = device or "cpu"
        self.weight_ih = Parameter(
            creation.empty(gates * hidden_size, input_size, dtype=dtype, device=dev)
        )
        self.weight_hh = Parameter(
            creation.empty(gates * hidden_size, hidden_size, dtype=dtype, device=dev)
        )
        self.bias_ih = self.bias_hh = None
        if bias:
            self.bias_ih = Parameter(creation.empty(gates * hidden_size, dtype=dtype, device=dev))
            self.bias_hh = Parameter(creation.empty(gates * hidden_size, dtype=dtype, device=dev))
        self.reset_parameters()

    reset_parameters = reset_uniform_

    def _prepare(self, input, states):
        """Check shapes; add a batch dim to unbatched (I,) inputs; zeros for missing states."""
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            shape = tuple(input.shape) if hasattr(input, "shape") else type(input).__name__
            raise ValueError(
                f"{name}: expected input of shape (B, {self.input_size}) or "
                f"({self.input_size},), got shape {shape}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input has {input.shape[-1]} features (shape "
                f"{tuple(input.shape)}), expected input_size={self.input_size}"
            )
        batched = input.ndim == 2
        want = (input.shape[0], self.hidden_size) if batched else (self.hidden_size,)
        out = []
        for s in states:
            if s is None:
                s = creation.zeros(*want, dtype=input.dtype, device=input.device)
            elif not isinstance(s, Tensor) or tuple(s.shape) != want:
                got = tuple(s.shape) if hasattr(s, "shape") else type(s).__name__
                raise ValueError(
                    f"{name}: expected hidden state of shape {want} for input of "
                    f"shape {tuple(input.shape)}, got {got}"
                )
            out.append(s if batched else ops.unsqueeze(s, 0))
        x = input if batched else ops.unsqueeze(input, 0)
        return x, out, (lambda t: t) if batched else (lambda t: ops.squeeze(t, 0))

    def _w(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(_CellBase):
    """One Elman step: input (B, I) or (I,), hx (B, H) or None -> h' (B, H)."""

    def __init__(
        self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, (h,), back = self._prepare(input, (hx,))
        return back(rnn_cell(x, h, *self._w(), nonlinearity=self.nonlinearity))


class LSTMCell(_CellBase):
    """One LSTM step: input (B, I), hx = (h, c) each (B, H) or None -> (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, (h, c), back = self._prepare(input, (None, None) if hx is None else tuple(hx))
        h, c = lstm_cell(x, (h, c), *self._w())
        return back(h), back(c)


class GRUCell(_CellBase):
    """One GRU step: input (B, I), hx (B, H) or None -> h' (B, H)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, (h,), back = self._prepare(input, (hx,))
        return back(gru_cell(x, h, *self._w()))
