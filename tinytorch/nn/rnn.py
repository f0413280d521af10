"""The recurrent stacks RNN, LSTM and GRU: layers x directions of a cell run over time.

Twins of PyTorch's: the same constructor arguments, parameter names (`weight_ih_l0`,
`bias_hh_l1_reverse`, ...), shapes, gate order (LSTM: i, f, g, o; GRU: r, z, n),
initialization U(-1/sqrt(H), 1/sqrt(H)) and return values (`output, h_n` and
`output, (h_n, c_n)`), so weights move between the two with a state_dict.

One layer and direction over a whole sequence runs two ways:

- `fused = True` (the default): `FusedRNNLayer`, `FusedLSTMLayer`, `FusedGRULayer`
  (rnn_fused.py), the sequence as a single Function on raw arrays, with the input projection of
  all steps in one matmul and backpropagation through time written by hand. Fast. An LSTM
  layer on float32 CPU arrays runs tinytorch/kernels/lstm.py's LSTMKernelLayer instead: the
  same Function with each step's elementwise work in one C++ call (chapter 12).
- `fused = False`: the readable loop, one cell function (rnn_cells.py) per time step, with
  autograd doing BPTT. The same numbers; the tests check both against PyTorch.
"""

from __future__ import annotations

import warnings

from .. import creation, ops
from ..kernels import lstm as fused_lstm
from ..tensor import Tensor
from . import functional as F
from .module import Module, Parameter
from .rnn_cells import gru_cell, lstm_cell, reset_uniform_, rnn_cell
from .rnn_fused import FusedGRULayer, FusedRNNLayer

__all__ = ["RNN", "LSTM", "GRU", "RNNBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- one layer, one direction, step by step (the readable path) -----------------------------
def _steps(T, reverse):
    return reversed(range(T)) if reverse else range(T)


def run_rnn(x, h, weights, reverse=False, nonlinearity="tanh"):
    """rnn_cell over x (T, B, I) from h (B, H) -> outputs (T, B, H), h_T. With reverse=True the
    sequence is read from the end; each output stays at its time position."""
    # BEGIN EXERCISE ch04: rnn_time_loop - rnn_cell at every t, outputs stacked (T, B, H)
    outs = [None] * len(x)
    for t in _steps(len(x), reverse):
        h = outs[t] = rnn_cell(x[t], h, *weights, nonlinearity=nonlinearity)
    return ops.stack(outs, 0), h
    # END EXERCISE


def run_gru(x, h, weights, reverse=False):
    """gru_cell over x (T, B, I) from h (B, H) -> outputs (T, B, H), h_T."""
    outs = [None] * len(x)
    for t in _steps(len(x), reverse):
        h = outs[t] = gru_cell(x[t], h, *weights)
    return ops.stack(outs, 0), h


def run_lstm(x, state, weights, reverse=False):
    """lstm_cell over x (T, B, I) from state (h, c) -> outputs h_t (T, B, H), (h_T, c_T)."""
    # BEGIN EXERCISE ch05: lstm_time_loop - lstm_cell at every t, carrying (h, c)
    outs = [None] * len(x)
    for t in _steps(len(x), reverse):
        state = lstm_cell(x[t], state, *weights)
        outs[t] = state[0]
    return ops.stack(outs, 0), state
    # END EXERCISE


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

    reset_parameters = reset_uniform_

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
        D = self.num_directions
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            # direction d of this layer starts from hx[layer * D + d] (zeros (B, H) if hx is None;
            # the LSTM takes both h and c); its final states go to h_n (c_n), and the next layer
            # reads the directions' outputs concatenated on the feature dimension
            # BEGIN EXERCISE ch04: stack_layers - every direction from its h_0, outputs concatenated
            outs = []
            for d in range(D):
                k = layer * D + d
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
            # END EXERCISE
            if self.dropout and self.training and layer < self.num_layers - 1:
                # BEGIN EXERCISE ch05: dropout_between_layers - F.dropout on x
                x = F.dropout(x, self.dropout, True)
                # END EXERCISE
        output, h_n = x, ops.stack(h_n, 0)
        c_n = ops.stack(c_n, 0) if lstm else None
        if not batched:
            output, h_n = ops.squeeze(output, 1), ops.squeeze(h_n, 1)
            c_n = ops.squeeze(c_n, 1) if lstm else None
        elif self.batch_first:
            output = ops.transpose(output, 0, 1)
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def _layer(self, x, state, weights, reverse):
        """One layer, one direction over x (T, B, I) -> outputs (T, B, H), h_T, c_T (or None).
        The initial state may be a raw array (zeros) or a Tensor."""
        T = x.shape[0]
        last = 0 if reverse else T - 1
        if self.fused:
            if self.mode == "LSTM":
                # float32 on the CPU: the per-step C++ cell of chapter 12, else chapter 05's
                layer = fused_lstm.layer_function(x, state, weights)
                packed = layer.apply(x, *state, *weights, reverse=reverse)
                return packed[:T], packed[last], packed[T]
            if self.mode == "GRU":
                out = FusedGRULayer.apply(x, state, *weights, reverse=reverse)
            else:
                out = FusedRNNLayer.apply(
                    x, state, *weights, reverse=reverse, relu=self.mode == "RNN_RELU"
                )
            return out, out[last], None
        if self.mode == "LSTM":
            state = tuple(s if isinstance(s, Tensor) else Tensor._wrap(s) for s in state)
            out, (h, c) = run_lstm(x, state, weights, reverse)
            return out, h, c
        state = state if isinstance(state, Tensor) else Tensor._wrap(state)
        if self.mode == "GRU":
            out, h = run_gru(x, state, weights, reverse)
        else:
            nl = "relu" if self.mode == "RNN_RELU" else "tanh"
            out, h = run_rnn(x, state, weights, reverse, nl)
        return out, h, None

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
