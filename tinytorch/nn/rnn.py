"""Recurrent layers: RNN, LSTM, GRU and their cells, twins of PyTorch's.

Same constructor arguments, parameter names (`weight_ih_l0`, `bias_hh_l1_reverse`, ...),
shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n), initialization U(-1/sqrt(H), 1/sqrt(H))
and return values (`output, h_n` and `output, (h_n, c_n)`), so weights move between the two
with a state_dict.

The same math runs two ways:

- `rnn_cell`, `lstm_cell`, `gru_cell`: one time step written with tensor ops, so every gate
  is visible and autograd derives the backward. The cells (RNNCell, ...) use them, and so do
  the stacks when `module.fused = False`.
- `FusedRNNLayer`, `FusedLSTMLayer`, `FusedGRULayer` (tinytorch/nn/rnn_fused.py): one whole
  sequence of one layer and direction as a single Function on raw arrays, with the input
  projection of all steps in one matmul and backpropagation through time written by hand.
  The stacks run these by default (fused=True): the same numbers, faster.
"""

from __future__ import annotations

import math
import warnings

from .. import creation, ops
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter
from .rnn_fused import FusedGRULayer, FusedLSTMLayer, FusedRNNLayer

__all__ = [
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "RNN",
    "LSTM",
    "GRU",
    "RNNBase",
    "rnn_cell",
    "lstm_cell",
    "gru_cell",
]


# ---- one time step, from tensor ops (what the chapters show) --------------------------------
def rnn_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh"):
    """Elman RNN step: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh). x (B, I), h (B, H)."""
    # BEGIN EXERCISE ch04: one RNN step, h' = tanh or relu of (x W_ih^T + b_ih + h W_hh^T + b_hh)
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return ops.tanh(pre) if nonlinearity == "tanh" else ops.relu(pre)
    # END EXERCISE


def lstm_cell(x, state, w_ih, w_hh, b_ih=None, b_hh=None):
    """LSTM step. x (B, I), state (h, c) each (B, H) -> (h', c'); weights stack the gates
    (4H, .) in PyTorch's order i, f, g, o."""
    h, c = state
    # BEGIN EXERCISE ch05: the LSTM gates i, f, g, o and the new cell state c' and output h'
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = ops.chunk(gates, 4, dim=1)
    i, f, g, o = ops.sigmoid(i), ops.sigmoid(f), ops.tanh(g), ops.sigmoid(o)
    c = f * c + i * g  # forget part of the old memory, write part of the candidate
    h = o * ops.tanh(c)  # expose part of the memory
    # END EXERCISE
    return h, c


def gru_cell(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """GRU step. x (B, I), h (B, H) -> h'; weights stack the gates (3H, .) as r, z, n."""
    # BEGIN EXERCISE ch05: the GRU gates r, z, candidate n and h' = (1 - z) * n + z * h
    xr, xz, xn = ops.chunk(F.linear(x, w_ih, b_ih), 3, dim=1)
    hr, hz, hn = ops.chunk(F.linear(h, w_hh, b_hh), 3, dim=1)
    r = ops.sigmoid(xr + hr)  # reset: how much of h feeds the candidate
    z = ops.sigmoid(xz + hz)  # update: keep the old h (z=1) or take the candidate (z=0)
    n = ops.tanh(xn + r * hn)
    return (1 - z) * n + z * h
    # END EXERCISE


# ---- the stacks ------------------------------------------------------------------------------
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class RNNBase(Module):
    """num_layers x (1 or 2 directions) recurrent layers; input (T, B, I) or (B, T, I) with
    batch_first, or unbatched (T, I). Dropout (training only) between layers, not after the
    last. `fused = False` runs the step-by-step cell functions instead (same results)."""

    fused = True

    def __init__(
        self,
        mode,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if proj_size:
            raise NotImplementedError("LSTM: proj_size > 0 is not supported")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(
                f"{type(self).__name__}: hidden_size and num_layers must be "
                f"positive, got {hidden_size} and {num_layers}"
            )
        if not 0 <= dropout <= 1:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout > 0 with num_layers=1 has no effect: dropout is applied "
                "between recurrent layers only",
                stacklevel=3,
            )
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, 0
        self.num_directions = 2 if bidirectional else 1
        gate = _GATES[mode] * hidden_size
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * self.num_directions
            for sfx in ("", "_reverse")[: self.num_directions]:
                shapes = {"weight_ih": (gate, n_in), "weight_hh": (gate, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gate,), bias_hh=(gate,))
                for name, shape in shapes.items():
                    setattr(
                        self,
                        f"{name}_l{layer}{sfx}",
                        Parameter(creation.empty(*shape, dtype=dtype, device=device or "cpu")),
                    )
        self.reset_parameters()

    def reset_parameters(self):
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def flatten_parameters(self):  # PyTorch's cuDNN hint; nothing to do here
        pass

    def _layer_weights(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        return tuple(
            getattr(self, f"{n}{sfx}") if self.bias or n.startswith("w") else None
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def _check(self, input, hx):
        name, D = type(self).__name__, self.num_directions
        if not isinstance(input, Tensor) or input.ndim not in (2, 3):
            shape = tuple(input.shape) if hasattr(input, "shape") else type(input).__name__
            order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"{name}: expected a 3-D input {order} or a 2-D unbatched input "
                f"(T, input_size), got shape {shape}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size: expected "
                f"{self.input_size}, got {input.shape[-1]} (input shape "
                f"{tuple(input.shape)})"
            )
        w = self.weight_ih_l0
        if input.dtype != w.dtype or input.device != w.device:
            raise TypeError(
                f"{name}: input is {input.dtype} on {input.device} but the "
                f"weights are {w.dtype} on {w.device}"
            )
        batched = input.ndim == 3
        B = input.shape[0 if self.batch_first else 1] if batched else None
        want = (
            (self.num_layers * D, B, self.hidden_size)
            if batched
            else (self.num_layers * D, self.hidden_size)
        )
        states = () if hx is None else (hx if isinstance(hx, tuple | list) else (hx,))
        for s in states:
            if not isinstance(s, Tensor) or tuple(s.shape) != want:
                got = tuple(s.shape) if hasattr(s, "shape") else type(s).__name__
                raise ValueError(
                    f"{name}: expected hidden state of shape {want} (num_layers * "
                    f"num_directions, {'batch, ' if batched else ''}hidden_size) for input of "
                    f"shape {tuple(input.shape)}, got {got}"
                    + (" (a 2-D unbatched input needs 2-D states)" if not batched else "")
                )

    def forward(self, input, hx=None):
        """input (T, B, I) [(B, T, I) if batch_first, or (T, I)] and optional initial states
        (num_layers * D, B, H) -> output (T, B, D * H) and h_n, or (h_n, c_n) for the LSTM."""
        lstm = self.mode == "LSTM"
        if hx is not None and lstm != isinstance(hx, tuple | list) or lstm and hx and len(hx) != 2:
            raise TypeError(
                f"{type(self).__name__}: hx must be "
                + ("a tuple (h_0, c_0)" if lstm else "one tensor h_0")
                + f", got {type(hx).__name__}"
            )
        self._check(input, hx)
        batched = input.ndim == 3
        x = input if not batched or not self.batch_first else ops.transpose(input, 0, 1)
        if not batched:  # (T, I) -> (T, 1, I), and the states gain a batch of one
            x = ops.unsqueeze(x, 1)
            if hx is not None:
                hx = tuple(ops.unsqueeze(s, 1) for s in hx) if lstm else ops.unsqueeze(hx, 1)
        if x.shape[0] == 0:
            raise ValueError(
                f"{type(self).__name__}: the input sequence is empty (shape {tuple(input.shape)})"
            )
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                if hx is None:
                    z = x.xp.zeros((x.shape[1], self.hidden_size), dtype=x.dtype)
                    state = (z, z) if lstm else z
                else:
                    state = (hx[0][k], hx[1][k]) if lstm else hx[k]
                out, h, c = self._layer(x, state, self._layer_weights(layer, d), bool(d))
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if len(outs) == 1 else ops.cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        output, h_n = x, ops.stack(h_n, 0)
        c_n = ops.stack(c_n, 0) if lstm else None
        if not batched:
            output, h_n = ops.squeeze(output, 1), ops.squeeze(h_n, 1)
            c_n = ops.squeeze(c_n, 1) if lstm else None
        elif self.batch_first:
            output = ops.transpose(output, 0, 1)
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def _layer(self, x, state, weights, reverse):
        """One layer, one direction over x (T, B, I) -> outputs (T, B, H), h_T, c_T (or None)."""
        T = x.shape[0]
        last = 0 if reverse else T - 1
        if self.fused:
            if self.mode == "LSTM":
                packed = FusedLSTMLayer.apply(x, *state, *weights, reverse=reverse)
                return packed[:T], packed[last], packed[T]
            if self.mode == "GRU":
                out = FusedGRULayer.apply(x, state, *weights, reverse=reverse)
            else:
                out = FusedRNNLayer.apply(
                    x, state, *weights, reverse=reverse, relu=self.mode == "RNN_RELU"
                )
            return out, out[last], None
        # the readable path: the cell functions, one step at a time; autograd does BPTT
        state = (
            tuple(s if isinstance(s, Tensor) else Tensor._wrap(s) for s in state)
            if (self.mode == "LSTM")
            else (state if isinstance(state, Tensor) else Tensor._wrap(state))
        )
        outs = [None] * T
        for t in reversed(range(T)) if reverse else range(T):
            if self.mode == "LSTM":
                state = lstm_cell(x[t], state, *weights)
                outs[t] = state[0]
            elif self.mode == "GRU":
                state = outs[t] = gru_cell(x[t], state, *weights)
            else:
                nl = "relu" if self.mode == "RNN_RELU" else "tanh"
                state = outs[t] = rnn_cell(x[t], state, *weights, nonlinearity=nl)
        if self.mode == "LSTM":
            return ops.stack(outs, 0), state[0], state[1]
        return ops.stack(outs, 0), state, None

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNN: unknown nonlinearity {nonlinearity!r} (expected 'tanh' or 'relu')"
            )
        super().__init__(
            "RNN_" + nonlinearity.upper(),
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
        )
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; forward returns output, (h_n, c_n). Gates i, f, g, o."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        proj_size=0,
        device=None,
        dtype=None,
    ):
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
        )


class GRU(RNNBase):
    """Gated recurrent unit; gates r, z, n, h_t = (1 - z) * n + z * h_{t-1}."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        device=None,
        dtype=None,
    ):
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            device,
            dtype,
        )


# ---- the cells: one step, for loops you write yourself ---------------------------------------
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

    reset_parameters = RNNBase.reset_parameters

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
