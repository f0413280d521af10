"""The LSTM layer with its per-step pointwise work in C++ (chapter 12; kernels/lstm.cpp).

`LSTMKernelLayer` is tinytorch/nn/rnn_fused.py's `FusedLSTMLayer` (chapter 05: the input
projection as one matmul, the recurrence in a loop, backpropagation through time by hand, the
weight gradients as one matmul each) with each step's elementwise work - the gates' sigmoid and
tanh, the cell and hidden state forward; the gates' gradients and dh, dc backward - in one C++
call instead of about ten NumPy calls (and without the backward's dozen whole-sequence passes
that precompute factors). The matrix products stay NumPy (BLAS) calls. Same inputs, outputs
and gradients as FusedLSTMLayer, its twin (tests/test_ch12_fused.py).

    layer_function(x, state, weights) -> LSTMKernelLayer or FusedLSTMLayer

nn.LSTM asks it which Function runs a layer: the kernel for float32 CPU arrays with a hidden
size that is a multiple of 16 (whole vectors of every instruction set), the fused kernels
switched on and the module built; FusedLSTMLayer otherwise (float64, CuPy, other sizes).
"""

from __future__ import annotations

import numpy as np

from ..nn.rnn_fused import FusedLSTMLayer, _h_prev, _in_proj, _weight_grads
from ..tensor import Tensor
from .common import lib, runs_on

__all__ = ["LSTMKernelLayer", "supports", "layer_function"]

LANES = 16  # H must be a multiple of the widest vector


def _addr(a) -> int:
    return a.__array_interface__["data"][0]


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


class LSTMKernelLayer(FusedLSTMLayer):
    """x (T, B, I), h0, c0 (B, H), W_ih (4H, I), W_hh (4H, H), biases (4H,) or None ->
    (T + 1, B, H): the outputs h_t, then the final cell state (as FusedLSTMLayer)."""

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False):
        T, B, _ = x.shape
        H = h0.shape[1]
        h0, c0 = _f32(h0), _f32(c0)
        acts = _in_proj(x, w_ih, b_ih, b_hh)  # (T, B, 4H): pre-activations, then the gates
        out = np.empty((T + 1, B, H), np.float32)
        cs, tcs = np.empty((T, B, H), np.float32), np.empty((T, B, H), np.float32)
        w_hh_t = np.ascontiguousarray(w_hh.T)  # (H, 4H): BLAS runs faster on it
        hw = np.empty((B, 4 * H), np.float32)
        cell = lib().lstm_cell_forward_cpu
        a_acts, a_cs, a_tcs, a_out = _addr(acts), _addr(cs), _addr(tcs), _addr(out)
        c_prev, h, row = _addr(c0), h0, B * H * 4  # bytes per (B, H) step
        for t in reversed(range(T)) if reverse else range(T):
            acts[t] += np.matmul(h, w_hh_t, out=hw)
            cell(a_acts, c_prev, a_cs, a_tcs, a_out, t, B, H)
            c_prev, h = a_cs + t * row, out[t]
        out[T] = cs[0 if reverse else T - 1]
        self.saved = (x, h0, c0, w_ih, w_hh, acts, cs, tcs, out, reverse, b_ih is not None)
        return out

    def backward(self, g):
        x, h0, c0, w_ih, w_hh, acts, cs, tcs, out, reverse, with_bias = self.saved
        g = _f32(g)
        T, B, H = len(x), h0.shape[0], h0.shape[1]
        d = np.empty((T, B, 4 * H), np.float32)  # gradients at the gate pre-activations
        dh, dc = np.zeros((B, H), np.float32), g[T].copy()
        cell = lib().lstm_cell_backward_cpu
        a_acts, a_cs, a_tcs, a_g, a_d = _addr(acts), _addr(cs), _addr(tcs), _addr(g), _addr(d)
        a_dh, a_dc, row = _addr(dh), _addr(dc), B * H * 4
        first = T - 1 if reverse else 0  # the step whose previous cell state is c0
        for t in range(T) if reverse else reversed(range(T)):
            c_prev = _addr(c0) if t == first else a_cs + (t + 1 if reverse else t - 1) * row
            cell(a_acts, c_prev, a_tcs, a_g, a_dh, a_dc, a_d, t, B, H)
            np.matmul(d[t], w_hh, out=dh)  # what reaches h_{t-1} (dh's own memory)
        dx = (d.reshape(-1, 4 * H) @ w_ih).reshape(x.shape)
        dw_ih, dw_hh, _, _ = _weight_grads(x, _h_prev(out[:T], h0, reverse), d, d, False)
        # both biases get the same gradient (d is the gradient at x W_ih^T + b_ih + h W_hh^T +
        # b_hh): one sum, handed to both (the engine copies what two leaves would share)
        db = d.reshape(-1, 4 * H).sum(0) if with_bias else None
        return dx, dh, dc, dw_ih, dw_hh, db, db


def supports(x, state, weights) -> bool:
    """Whether LSTMKernelLayer runs this layer: float32 CPU arrays, H a multiple of 16."""
    from . import fused_enabled

    if not fused_enabled():
        return False
    arrays = [t.data if isinstance(t, Tensor) else t for t in (x, *state, *weights)]
    for a in arrays:
        if a is not None and (type(a) is not np.ndarray or a.dtype != np.float32):
            return False
    H = arrays[1].shape[-1]
    return H % LANES == 0 and runs_on("cpu")


def layer_function(x, state, weights):
    """The Function nn.LSTM runs one layer and direction with (see the module docstring)."""
    return LSTMKernelLayer if supports(x, state, weights) else FusedLSTMLayer
