"""The recurrent layers' fast path: one whole sequence of one layer and direction per Function.

`nn.RNN`, `nn.LSTM` and `nn.GRU` (tinytorch/nn/rnn.py) run these by default. Each computes the
same equations as `rnn_cell` / `lstm_cell` / `gru_cell`, but on raw arrays and for all time
steps in one graph node:

- forward: the input projection of every step is ONE matmul, (T*B, I) @ W_ih^T, before the
  loop; the loop itself does only h W_hh^T and the gate arithmetic, in place where it can.
- backward: backpropagation through time written by hand, the same loop run backwards. It
  stores the gradient at every step's gate pre-activations, so the weight gradients are again
  one matmul each over all T*B rows (dW = sum_t d_t^T x_t).

One node per layer instead of ~15 small ops per step (each with its Python overhead, forward
and backward) is what puts the stacks near PyTorch's speed. The tests check these backwards
against finite differences and against PyTorch.

Shapes: x (T, B, I) time-major, h0/c0 (B, H), W_ih (G*H, I), W_hh (G*H, H), biases (G*H,) or
None, with G = 1 (RNN), 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n). `reverse=True` walks the
sequence from the end (the second direction of a bidirectional layer); outputs stay at their
time positions.
"""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..ops.activations import sigmoid_array

__all__ = ["FusedRNNLayer", "FusedLSTMLayer", "FusedGRULayer"]


def _in_proj(x, w_ih, *biases):
    """x (T, B, I) @ W_ih^T for all time steps in one matmul, plus the biases -> (T, B, G)."""
    T, B, n_in = x.shape
    xw = (x.reshape(T * B, n_in) @ w_ih.T).reshape(T, B, -1)
    for b in biases:
        if b is not None:
            xw += b
    return xw


def _h_prev(out, h0, reverse):
    """The state each step started from: h0 then the outputs, in the direction of travel."""
    xp = backend.xp_of(out)
    if reverse:
        return xp.concatenate([out[1:], h0[None]])
    return xp.concatenate([h0[None], out[:-1]])


def _weight_grads(x, hp, d_in, d_hh, with_bias):
    """Every step's weight gradient in one matmul each: dW_ih = sum_t d_in[t]^T x[t], ..."""
    T, B, n_in = x.shape
    G = d_in.shape[2]
    d_in2, d_hh2 = d_in.reshape(T * B, G), d_hh.reshape(T * B, G)
    dw_ih = d_in2.T @ x.reshape(T * B, n_in)
    dw_hh = d_hh2.T @ hp.reshape(T * B, -1)
    db_ih = d_in2.sum(0) if with_bias else None
    db_hh = d_hh2.sum(0) if with_bias else None
    return dw_ih, dw_hh, db_ih, db_hh


class FusedRNNLayer(Function):
    """Returns the outputs (T, B, H); h_n is the last one in the direction of travel."""

    def forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False, relu=False):
        xp = backend.xp_of(x)
        out = _in_proj(x, w_ih, b_ih, b_hh)  # becomes the outputs, step by step, in place
        h = h0
        w_hh_t = xp.ascontiguousarray(w_hh.T)  # (H, G): BLAS runs faster on it
        for t in reversed(range(len(x))) if reverse else range(len(x)):
            # BEGIN EXERCISE ch04: fused_rnn_forward - out[t] += h W_hh^T, tanh or relu in place
            a = out[t]
            a += h @ w_hh_t
            h = xp.maximum(a, 0, out=a) if relu else xp.tanh(a, out=a)
            # END EXERCISE
        self.saved = (x, h0, w_ih, w_hh, out, reverse, relu, b_ih is not None)
        return out

    def backward(self, g):
        x, h0, w_ih, w_hh, out, reverse, relu, with_bias = self.saved
        xp, g = backend.xp_of(g), g.astype(x.dtype, copy=False)  # a float64 g would be slow
        d = xp.empty_like(out)  # gradient at each step's pre-activation
        dh = xp.zeros_like(h0)
        for t in range(len(x)) if reverse else reversed(range(len(x))):
            # BEGIN EXERCISE ch04: fused_rnn_backward - d[t] = dL/da_t, then dh for the step before
            dh = dh + g[t]
            d[t] = dh * (out[t] > 0) if relu else dh * (1 - out[t] * out[t])
            dh = d[t] @ w_hh
            # END EXERCISE
        dx = (d.reshape(-1, d.shape[2]) @ w_ih).reshape(x.shape)
        dws = _weight_grads(x, _h_prev(out, h0, reverse), d, d, with_bias)
        return (dx, dh) + dws


class FusedLSTMLayer(Function):
    """Returns (T + 1, B, H): the outputs h_t for every step, then the final cell state."""

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=False):
        xp = backend.xp_of(x)
        T, B, _ = x.shape
        H = h0.shape[1]
        acts = _in_proj(x, w_ih, b_ih, b_hh)  # (T, B, 4H): pre-activations, then the gates
        out = xp.empty((T + 1, B, H), dtype=x.dtype)
        cs, tcs = xp.empty((T, B, H), dtype=x.dtype), xp.empty((T, B, H), dtype=x.dtype)
        h, c = h0, c0
        w_hh_t = xp.ascontiguousarray(w_hh.T)  # (H, G): BLAS runs faster on it
        for t in reversed(range(T)) if reverse else range(T):
            # BEGIN EXERCISE ch05: fused_lstm_forward - gates in acts[t], c in cs[t], h in out[t]
            a = acts[t]
            a += h @ w_hh_t
            xp.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])  # g
            sigmoid_array(a[:, : 2 * H])  # i, f
            sigmoid_array(a[:, 3 * H :])  # o
            i, f, gg, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            c = xp.multiply(f, c, out=cs[t])  # c_t = f c_{t-1} + i g, written in place
            c += i * gg
            h = xp.multiply(o, xp.tanh(c, out=tcs[t]), out=out[t])  # h_t = o tanh(c_t)
            # END EXERCISE
        out[T] = c
        self.saved = (x, h0, c0, w_ih, w_hh, acts, cs, tcs, out, reverse, b_ih is not None)
        return out

    def backward(self, g):
        x, h0, c0, w_ih, w_hh, acts, cs, tcs, out, reverse, with_bias = self.saved
        xp, g = backend.xp_of(g), g.astype(x.dtype, copy=False)
        T, B, H = len(x), h0.shape[0], h0.shape[1]
        a4 = acts.reshape(T, B, 4, H)
        i, f, gg, o = a4[:, :, 0], a4[:, :, 1], a4[:, :, 2], a4[:, :, 3]
        # Everything that does not depend on the incoming gradient, for all steps at once
        # (a few large array ops instead of many small ones in the loop). With dc, dh the
        # gradients at c_t, h_t: da_i = dc g i(1-i), da_f = dc c_{t-1} f(1-f),
        # da_g = dc i (1-g^2), da_o = dh tanh(c_t) o(1-o), and dc += dh o (1 - tanh^2(c_t)).
        d = xp.empty_like(a4)  # these factors first, then (in place) the gradients
        d[:, :, 0] = gg * i * (1 - i)
        d[:, :, 1] = _h_prev(cs, c0, reverse) * f * (1 - f)
        d[:, :, 2] = i * (1 - gg * gg)
        d[:, :, 3] = tcs * o * (1 - o)
        dc_dh = o * (1 - tcs * tcs)
        dh, dc = xp.zeros_like(h0), g[T].copy()
        for t in range(T) if reverse else reversed(range(T)):
            # BEGIN EXERCISE ch05: fused_lstm_backward - scale d[t] by dc and dh; dc and dh for t-1
            dh += g[t]  # from the output at t (the part from t+1 is already in dh)
            dc += dh * dc_dh[t]
            dt = d[t]
            dt[:, :3] *= dc[:, None]
            dt[:, 3] *= dh
            dc *= f[t]  # what reaches c_{t-1}
            dh = dt.reshape(B, 4 * H) @ w_hh  # what reaches h_{t-1}
            # END EXERCISE
        d = d.reshape(T, B, 4 * H)
        dx = (d.reshape(-1, 4 * H) @ w_ih).reshape(x.shape)
        dws = _weight_grads(x, _h_prev(out[:T], h0, reverse), d, d, with_bias)
        return (dx, dh, dc) + dws


class FusedGRULayer(Function):
    """Returns the outputs (T, B, H); h_n is the last one in the direction of travel."""

    def forward(self, x, h0, w_ih, w_hh, b_ih, b_hh, reverse=False):
        xp = backend.xp_of(x)
        T, B, _ = x.shape
        H = h0.shape[1]
        acts = _in_proj(x, w_ih, b_ih)  # (T, B, 3H): becomes r, z, n
        hns = xp.empty((T, B, H), dtype=x.dtype)  # h W_hn^T + b_hn, which r multiplies
        out = xp.empty((T, B, H), dtype=x.dtype)
        h = h0
        w_hh_t = xp.ascontiguousarray(w_hh.T)  # (H, G): BLAS runs faster on it
        for t in reversed(range(T)) if reverse else range(T):
            hw = h @ w_hh_t
            if b_hh is not None:
                hw += b_hh
            a = acts[t]
            a[:, : 2 * H] += hw[:, : 2 * H]
            r, z = sigmoid_array(a[:, : 2 * H])[:, :H], a[:, H : 2 * H]
            hns[t] = hw[:, 2 * H :]
            a[:, 2 * H :] += r * hns[t]
            n = xp.tanh(a[:, 2 * H :], out=a[:, 2 * H :])
            h = out[t] = n + z * (h - n)
        self.saved = (x, h0, w_ih, w_hh, acts, hns, out, reverse, b_ih is not None)
        return out

    def backward(self, g):
        x, h0, w_ih, w_hh, acts, hns, out, reverse, with_bias = self.saved
        xp, g = backend.xp_of(g), g.astype(x.dtype, copy=False)
        T, B, H = len(x), h0.shape[0], h0.shape[1]
        hp = _h_prev(out, h0, reverse)
        a3 = acts.reshape(T, B, 3, H)
        r, z, n = a3[:, :, 0], a3[:, :, 1], a3[:, :, 2]
        # With dh the gradient at h_t, every gate pre-activation's gradient is dh times a
        # factor that does not depend on dh; compute those for all steps at once:
        # da_n = dh (1-z)(1-n^2), da_r = da_n (h W_hn^T + b_hn) r(1-r),
        # da_z = dh (h_{t-1} - n) z(1-z); and h W_hn^T gets da_n * r (r multiplies it).
        fac = xp.empty_like(a3)
        fac[:, :, 2] = (1 - z) * (1 - n * n)
        fac[:, :, 0] = fac[:, :, 2] * hns * r * (1 - r)
        fac[:, :, 1] = (hp - n) * z * (1 - z)
        d_hh = fac.copy()  # factors, then (in place) the gradients at h W_hh^T + b_hh
        d_hh[:, :, 2] *= r
        dhs = xp.empty((T, B, H), dtype=x.dtype)
        dh = xp.zeros_like(h0)
        for t in range(T) if reverse else reversed(range(T)):
            # BEGIN EXERCISE ch05: fused_gru_backward - dhs[t], d_hh[t] scaled by it, dh for t-1
            dh = dhs[t] = dh + g[t]
            dt = d_hh[t]
            dt *= dh[:, None]
            dh = dh * z[t] + dt.reshape(B, 3 * H) @ w_hh  # the direct path z, and via W_hh
            # END EXERCISE
        d_in = (fac * dhs[:, :, None]).reshape(T, B, 3 * H)  # at x W_ih^T + b_ih
        d_hh = d_hh.reshape(T, B, 3 * H)
        dx = (d_in.reshape(-1, 3 * H) @ w_ih).reshape(x.shape)
        return (dx, dh) + _weight_grads(x, hp, d_in, d_hh, with_bias)
