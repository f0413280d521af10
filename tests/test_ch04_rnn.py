"""Chapter 04: RNNCell and RNN against torch.nn, truncated BPTT, clipping, sampling.

`check_layer` (one layer, one direction: the time loops and the fused layers), `check_stack`
and `check_cell` (all also used by chapter 05's tests) build the torch module, copy
its state_dict into ours, run both on the same random input and states, backpropagate the
same random weighting of every output, and compare outputs, final states and the gradients of
the input, the initial states and every parameter. Tolerances: float64 uses the suite's 1e-7
relative; float32 uses rtol 1e-4 / atol 1e-5 because a 50-step, 2-layer recurrence sums
hundreds of rounded products (single ops stay at 1e-5).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn, optim
from tinytorch.data.windows import TBPTTLoader, spread_windows, tbptt_batches
from tinytorch.gradcheck import gradcheck
from tinytorch.models.char_rnn import CharRNN, sample
from tinytorch.nn.rnn import run_gru, run_lstm, run_rnn
from tinytorch.nn.rnn_fused import FusedGRULayer, FusedLSTMLayer, FusedRNNLayer
from tinytorch.train import evaluate, train_step
from tinytorch.train.tbptt import TBPTTLoss, detach_state

pytestmark = pytest.mark.ch04

rng = np.random.default_rng()
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}
TOL = {"float64": {}, "float32": dict(rtol=1e-4, atol=1e-5)}


def _pair(x, dtype, device):
    """The same random array as a torch leaf and a tinytorch leaf."""
    return (
        torch.tensor(x, dtype=TORCH_DTYPE[dtype], requires_grad=True),
        tt.tensor(x, dtype=dtype, device=device, requires_grad=True),
    )


def _backward_both(t_outs, o_outs, dtype, device):
    """Backpropagate sum_k <out_k, r_k> with the same random r_k through both."""
    lt = lo = 0
    for t_out, o_out in zip(t_outs, o_outs):
        r = rng.standard_normal(tuple(t_out.shape))
        lt = lt + (t_out * torch.tensor(r, dtype=t_out.dtype)).sum()
        lo = lo + (o_out * tt.tensor(r, dtype=dtype, device=device)).sum()
    lt.backward()
    lo.backward()


def _compare_params(ours, theirs, tol, what):
    theirs = dict(theirs.named_parameters())
    names = [k for k, _ in ours.named_parameters()]
    assert names == list(theirs), f"{what}: parameter names differ: {names} vs {list(theirs)}"
    for k, p in ours.named_parameters():
        assert_close(p.grad, theirs[k].grad, msg=f"{what}: grad of {k}", **tol)


def _layer_fn(kind, mode, nonlinearity="tanh"):
    """One layer, one direction as fn(x, state, weights, reverse) -> (outputs, h_T, c_T or None):
    kind "loop" is the step-by-step path (run_rnn, ...), "fused" the Fused*Layer Function."""
    relu = nonlinearity == "relu"

    def fn(x, state, w, reverse):
        T, last = x.shape[0], 0 if reverse else x.shape[0] - 1
        if kind == "loop" and mode == "LSTM":
            out, (h, c) = run_lstm(x, state, w, reverse)
            return out, h, c
        if kind == "loop":
            run = run_gru if mode == "GRU" else run_rnn
            kw = {} if mode == "GRU" else {"nonlinearity": nonlinearity}
            return (*run(x, state, w, reverse, **kw), None)
        if mode == "LSTM":
            packed = FusedLSTMLayer.apply(x, *state, *w, reverse=reverse)
            return packed[:T], packed[last], packed[T]
        if mode == "GRU":
            out = FusedGRULayer.apply(x, state, *w, reverse=reverse)
        else:
            out = FusedRNNLayer.apply(x, state, *w, reverse=reverse, relu=relu)
        return out, out[last], None

    return fn


def check_layer(
    kind, mode, *, reverse=False, nonlinearity="tanh", bias=True, grads=True, T=6, B=3, I=4, H=5
):
    """One layer and direction of ours (see _layer_fn) against torch.nn.<mode> with the same
    weights, float64: outputs, final states, and the gradients of x, the initial state(s) and
    the weights. reverse: torch runs the time-flipped input (what the reverse direction is)."""
    kw = {"nonlinearity": nonlinearity} if mode == "RNN" else {}
    theirs = getattr(torch.nn, mode)(I, H, bias=bias, dtype=torch.float64, **kw)
    ws = [theirs.weight_ih_l0, theirs.weight_hh_l0]
    ws += [theirs.bias_ih_l0, theirs.bias_hh_l0] if bias else []
    ours_w = [tt.tensor(w.detach().numpy(), requires_grad=True) for w in ws]
    ours_w += [] if bias else [None, None]
    xt, xo = _pair(rng.standard_normal((T, B, I)), "float64", "cpu")
    states = [
        _pair(rng.standard_normal((B, H)), "float64", "cpu") for _ in range(1 + (mode == "LSTM"))
    ]
    t_state = tuple(s[0][None] for s in states) if mode == "LSTM" else states[0][0][None]
    t_out, t_fin = theirs(xt.flip(0) if reverse else xt, t_state)
    t_out = t_out.flip(0) if reverse else t_out
    t_all = (t_out, *(f[0] for f in t_fin)) if mode == "LSTM" else (t_out, t_fin[0])
    o_state = tuple(s[1] for s in states) if mode == "LSTM" else states[0][1]
    o_all = _layer_fn(kind, mode, nonlinearity)(xo, o_state, ours_w, reverse)
    o_all = o_all if mode == "LSTM" else o_all[:2]
    what = f"{kind} {mode} {nonlinearity} reverse={reverse} bias={bias}"
    for k, (a, e) in enumerate(zip(o_all, t_all)):
        assert_close(a, e, msg=f"{what}: forward output {k}")
    if not grads:
        return
    _backward_both(t_all, o_all, "float64", "cpu")
    assert_close(xo.grad, xt.grad, msg=f"{what}: grad of x")
    for k, (st, so) in enumerate(states):
        assert_close(so.grad, st.grad, msg=f"{what}: grad of initial state {k}")
    for k, (wo, wt) in enumerate(zip(ours_w, ws)):
        assert_close(wo.grad, wt.grad, msg=f"{what}: grad of weight {k}")


def layer_gradcheck(mode, reverse, nonlinearity="tanh", T=5, B=2, I=3, H=2):
    """Finite differences on one fused layer: gradients of x, the initial state(s), weights."""
    G = {"RNN": 1, "LSTM": 4, "GRU": 3}[mode]
    x = tt.randn(T, B, I, dtype="float64", requires_grad=True)
    states = [
        tt.randn(B, H, dtype="float64", requires_grad=True) for _ in range(1 + (mode == "LSTM"))
    ]
    shapes = [(G * H, I), (G * H, H), (G * H,), (G * H,)]
    w = [tt.tensor(0.5 * rng.standard_normal(s), requires_grad=True) for s in shapes]
    fn = _layer_fn("fused", mode, nonlinearity)
    n = len(states)

    def f(x, *rest):
        st = tuple(rest[:n]) if mode == "LSTM" else rest[0]
        out, h, c = fn(x, st, rest[n:], reverse)
        return (out, h) if c is None else (out, h, c)

    gradcheck(f, (x, *states, *w))


def check_stack(
    mode,
    *,
    layers=1,
    batch_first=False,
    bidirectional=False,
    with_state=False,
    T=5,
    dtype="float64",
    device="cpu",
    fused=True,
    unbatched=False,
    bias=True,
    nonlinearity="tanh",
    B=3,
    I=5,
    H=4,
):
    kw = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if mode == "RNN":
        kw["nonlinearity"] = nonlinearity
    theirs = getattr(torch.nn, mode)(I, H, **kw, dtype=TORCH_DTYPE[dtype])
    ours = getattr(nn, mode)(I, H, **kw, dtype=dtype, device=device)
    ours.fused = fused
    ours.load_state_dict(theirs.state_dict())
    D = 2 if bidirectional else 1
    x_shape = (T, I) if unbatched else ((B, T, I) if batch_first else (T, B, I))
    s_shape = (layers * D, H) if unbatched else (layers * D, B, H)
    xt, xo = _pair(rng.standard_normal(x_shape), dtype, device)
    n_states = 2 if mode == "LSTM" else 1
    states = [_pair(rng.standard_normal(s_shape), dtype, device) for _ in range(n_states)]
    what = f"{mode} {kw} T={T} {dtype} fused={fused} unbatched={unbatched}"
    if not with_state:
        t_out, t_state = theirs(xt)
        o_out, o_state = ours(xo)
    elif mode == "LSTM":
        t_out, t_state = theirs(xt, tuple(s[0] for s in states))
        o_out, o_state = ours(xo, tuple(s[1] for s in states))
    else:
        t_out, t_state = theirs(xt, states[0][0])
        o_out, o_state = ours(xo, states[0][1])
    t_all = (t_out, *t_state) if mode == "LSTM" else (t_out, t_state)
    o_all = (o_out, *o_state) if mode == "LSTM" else (o_out, o_state)
    tol = TOL[dtype]
    for k, (a, e) in enumerate(zip(o_all, t_all)):
        assert o_all[k].device == device
        assert_close(a, e, msg=f"{what}: forward output {k}", **tol)
    _backward_both(t_all, o_all, dtype, device)
    assert_close(xo.grad, xt.grad, msg=f"{what}: grad of the input", **tol)
    if with_state:
        for k, (st, so) in enumerate(states):
            assert_close(so.grad, st.grad, msg=f"{what}: grad of initial state {k}", **tol)
    _compare_params(ours, theirs, tol, what)


def check_stack_float32(mode, T, bidirectional, device):
    """Two layers with an initial state in float32: the float32 row of each chapter's stacks."""
    check_stack(
        mode,
        layers=2,
        bidirectional=bidirectional,
        with_state=True,
        T=T,
        dtype="float32",
        device=device,
    )


def check_cell(
    mode,
    *,
    batched=True,
    with_state=True,
    dtype="float64",
    device="cpu",
    bias=True,
    nonlinearity="tanh",
    B=3,
    I=5,
    H=4,
):
    kw = dict(bias=bias)
    if mode == "RNNCell":
        kw["nonlinearity"] = nonlinearity
    theirs = getattr(torch.nn, mode)(I, H, **kw, dtype=TORCH_DTYPE[dtype])
    ours = getattr(nn, mode)(I, H, **kw, dtype=dtype, device=device)
    ours.load_state_dict(theirs.state_dict())
    xt, xo = _pair(rng.standard_normal((B, I) if batched else (I,)), dtype, device)
    s_shape = (B, H) if batched else (H,)
    states = [
        _pair(rng.standard_normal(s_shape), dtype, device)
        for _ in range(2 if mode == "LSTMCell" else 1)
    ]
    if not with_state:
        t_all, o_all = theirs(xt), ours(xo)
    elif mode == "LSTMCell":
        t_all, o_all = (
            theirs(xt, tuple(s[0] for s in states)),
            ours(xo, tuple(s[1] for s in states)),
        )
    else:
        t_all, o_all = theirs(xt, states[0][0]), ours(xo, states[0][1])
    t_all = t_all if isinstance(t_all, tuple) else (t_all,)
    o_all = o_all if isinstance(o_all, tuple) else (o_all,)
    what = f"{mode} {kw} batched={batched} {dtype}"
    for a, e in zip(o_all, t_all):
        assert_close(a, e, msg=f"{what}: forward")
    _backward_both(t_all, o_all, dtype, device)
    assert_close(xo.grad, xt.grad, msg=f"{what}: grad of the input")
    if with_state:
        for st, so in states:
            assert_close(so.grad, st.grad, msg=f"{what}: grad of a state")
    _compare_params(ours, theirs, {}, what)


# (layers, batch_first, bidirectional, with_state, T): the whole grid the issue asks for
GRID = list(itertools.product((1, 2), (False, True), (False, True), (False, True), (1, 50)))


def _grid_id(p):
    layers, bf, bi, st, T = p
    return f"L{layers}-{'bf' if bf else 'tf'}-{'bi' if bi else 'uni'}-{'h0' if st else 'noh0'}-T{T}"


# ---- one step: rnn_cell and RNNCell ------------------------------------------------------------
@pytest.mark.exercise("rnn_cell")
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rnn_cell_matches_torch(nonlinearity, batched, with_state, dtype, device):
    check_cell(
        "RNNCell",
        batched=batched,
        with_state=with_state,
        nonlinearity=nonlinearity,
        dtype=dtype,
        device=device,
    )


@pytest.mark.exercise("rnn_cell")
def test_rnn_cell_gradcheck():
    cell = nn.RNNCell(3, 4, dtype="float64")
    x = tt.randn(2, 3, dtype="float64", requires_grad=True)
    h = tt.randn(2, 4, dtype="float64", requires_grad=True)
    gradcheck(lambda x, h, *ps: cell(x, h), (x, h, *cell.parameters()))


# ---- one layer over time: the readable loop and the fused layer ---------------------------------
@pytest.mark.exercise("rnn_time_loop")
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_time_loop_matches_torch(reverse, nonlinearity):
    check_layer("loop", "RNN", reverse=reverse, nonlinearity=nonlinearity)
    check_layer("loop", "RNN", reverse=reverse, nonlinearity=nonlinearity, bias=False, T=1)


@pytest.mark.exercise("fused_rnn_forward")
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_rnn_forward_matches_torch(reverse, nonlinearity):
    check_layer("fused", "RNN", reverse=reverse, nonlinearity=nonlinearity, grads=False)
    check_layer("fused", "RNN", reverse=reverse, nonlinearity=nonlinearity, grads=False, T=1)


@pytest.mark.exercise("fused_rnn_backward")
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_rnn_backward_matches_torch(reverse, nonlinearity):
    check_layer("fused", "RNN", reverse=reverse, nonlinearity=nonlinearity)
    check_layer("fused", "RNN", reverse=reverse, nonlinearity=nonlinearity, bias=False, T=1)


@pytest.mark.exercise("fused_rnn_backward")
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_rnn_backward_gradcheck(reverse):
    # the hand-written BPTT against finite differences
    layer_gradcheck("RNN", reverse)


# ---- the stack: layers x directions -------------------------------------------------------------
@pytest.mark.exercise("stack_layers")
@pytest.mark.parametrize("cfg", GRID, ids=[_grid_id(p) for p in GRID])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_matches_torch_float64(cfg, nonlinearity, device):
    layers, bf, bi, st, T = cfg
    check_stack(
        "RNN",
        layers=layers,
        batch_first=bf,
        bidirectional=bi,
        with_state=st,
        T=T,
        nonlinearity=nonlinearity,
        device=device,
    )


@pytest.mark.exercise("stack_layers")
@pytest.mark.parametrize("T", [1, 50])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_matches_torch_float32(T, bidirectional, device):
    check_stack_float32("RNN", T, bidirectional, device)


@pytest.mark.exercise("rnn_time_loop")
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T", [1, 50])
def test_rnn_step_by_step_path_matches_torch(T, nonlinearity):
    # fused=False runs rnn_cell once per step and lets autograd do BPTT: same numbers
    check_stack(
        "RNN",
        layers=2,
        bidirectional=True,
        with_state=True,
        T=T,
        fused=False,
        nonlinearity=nonlinearity,
    )


@pytest.mark.exercise("stack_layers")
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_unbatched_and_no_bias_match_torch(with_state, bidirectional):
    check_stack(
        "RNN", layers=2, bidirectional=bidirectional, with_state=with_state, T=7, unbatched=True
    )
    check_stack(
        "RNN", layers=2, bidirectional=bidirectional, with_state=with_state, T=7, bias=False
    )


@pytest.mark.exercise("stack_layers")
def test_stacked_bidirectional_layers_by_hand():
    # layer 1 reads [forward outputs, reverse outputs] of layer 0; h_n is ordered (layer, dir)
    rnn = nn.RNN(3, 4, num_layers=2, bidirectional=True, dtype="float64")
    x, h0 = tt.randn(6, 2, 3, dtype="float64"), tt.randn(4, 2, 4, dtype="float64")
    out, h_n = rnn(x, h0)
    loop = _layer_fn("fused", "RNN")
    ins, finals = x, []
    for layer in range(2):
        outs = []
        for d in range(2):
            o, h, _ = loop(ins, h0[2 * layer + d], rnn._layer_weights(layer, d), bool(d))
            outs.append(o)
            finals.append(h)
        ins = tt.cat(outs, 2)
    assert_close(out, ins)
    assert_close(h_n, tt.stack(finals, 0))
    # no h_0: every layer and direction starts from zeros
    assert_close(rnn(x)[0], rnn(x, tt.zeros(4, 2, 4, dtype="float64"))[0])


def test_parameter_names_shapes_and_init_match_torch():
    ours = nn.RNN(5, 8, num_layers=2, bidirectional=True)
    theirs = torch.nn.RNN(5, 8, num_layers=2, bidirectional=True)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    k = 1 / np.sqrt(8)
    values = np.concatenate([to_numpy(p).ravel() for p in ours.parameters()])
    assert values.min() >= -k and values.max() <= k  # U(-1/sqrt(H), 1/sqrt(H)) as PyTorch
    assert values.min() < -0.9 * k and values.max() > 0.9 * k  # ...and filling that range
    assert abs(values.std() - k / np.sqrt(3)) < 0.1 * k


def test_bad_inputs_name_expected_and_actual_shapes():
    rnn = nn.RNN(5, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"expected 5, got 7.*\(6, 3, 7\)"):
        rnn(tt.randn(6, 3, 7))
    with pytest.raises(ValueError, match=r"\(2, 3, 4\).*\(6, 3, 5\).*got \(1, 3, 4\)"):
        rnn(tt.randn(6, 3, 5), tt.randn(1, 3, 4))
    # a 2-D input is one unbatched sequence (as in PyTorch); its states must then be 2-D too
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(6, 5\).*got \(2, 3, 4\).*2-D"):
        rnn(tt.randn(6, 5), tt.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"3-D input.*got shape \(2, 6, 3, 5\)"):
        rnn(tt.randn(2, 6, 3, 5))
    cell = nn.RNNCell(5, 4)
    with pytest.raises(ValueError, match=r"\(B, 5\).*got shape \(6, 3, 5\)"):
        cell(tt.randn(6, 3, 5))
    with pytest.raises(ValueError, match=r"expected hidden state of shape \(3, 4\).*got \(3, 5\)"):
        cell(tt.randn(3, 5), tt.randn(3, 5))
    model = CharRNN(10, 4, 8, 1, cell="rnn")
    with pytest.raises(ValueError, match=r"\(B, T\), got shape \(7,\)"):
        model(tt.tensor([1, 2, 3, 4, 5, 6, 7]))


# ---- truncated BPTT: the windows, the cut, the carried state -----------------------------------
@pytest.mark.exercise("tbptt_batches")
def test_tbptt_batches_are_consecutive_streams():
    ids = rng.integers(0, 50, size=1000)
    batches = list(tbptt_batches(ids, batch_size=4, seq_len=16))
    n = 999 // 4
    assert len(batches) == n // 16
    assert all(x.shape == (4, 16) and y.shape == (4, 16) for x, y in batches)
    assert batches[0][0].dtype == np.int64
    xs = np.concatenate([to_numpy(x) for x, _ in batches], axis=1)
    ys = np.concatenate([to_numpy(y) for _, y in batches], axis=1)
    for b in range(4):  # row b of window k+1 continues row b of window k
        np.testing.assert_array_equal(xs[b], ids[b * n : b * n + xs.shape[1]])
        np.testing.assert_array_equal(ys[b], ids[b * n + 1 : b * n + 1 + xs.shape[1]])
    with pytest.raises(ValueError, match="too few"):
        list(tbptt_batches(ids[:40], batch_size=4, seq_len=16))


@pytest.mark.exercise("tbptt_batches")
def test_tbptt_loader_flags_the_first_window_of_every_pass():
    ids = rng.integers(0, 50, size=300)
    loader = TBPTTLoader(ids, 2, 10)
    for _ in range(2):  # re-iterable: every pass starts over
        batches = list(loader)
        assert len(batches) == len(loader) == 149 // 10
        assert [first for _, _, first in batches] == [True] + [False] * (len(batches) - 1)
        for (x, y, _), (x2, y2) in zip(batches, tbptt_batches(ids, 2, 10)):
            np.testing.assert_array_equal(to_numpy(x), to_numpy(x2))
            np.testing.assert_array_equal(to_numpy(y), to_numpy(y2))
    x, y = spread_windows(ids, 3, 7)
    for b in range(3):
        np.testing.assert_array_equal(to_numpy(x)[b], ids[b * 100 : b * 100 + 7])
        np.testing.assert_array_equal(to_numpy(y)[b], ids[b * 100 + 1 : b * 100 + 8])


@pytest.mark.exercise("detach_state")
def test_detach_state_cuts_the_graph_but_keeps_values():
    model = CharRNN(10, 4, 6, 1, cell="rnn", dtype="float64")
    x = tt.randint(0, 10, (2, 5))
    _, state = model(x)
    cut = detach_state(state)
    assert not cut.requires_grad and cut.grad_fn is None
    assert_close(cut, state.detach())
    # backward from the next window reaches this window's parameters only through the graph:
    # with the detached state it must equal the gradient of a fresh run from a constant state
    logits, _ = model(x, cut)
    logits.sum().backward()
    g1 = [to_numpy(p.grad).copy() for p in model.parameters()]
    model.zero_grad()
    logits, _ = model(x, tt.tensor(to_numpy(state.detach())))
    logits.sum().backward()
    for a, p in zip(g1, model.parameters()):
        assert_close(a, p.grad)
    h, c = detach_state((state, state * 2))
    assert not h.requires_grad and not c.requires_grad
    assert_close(c, state.detach() * 2)
    assert detach_state(None) is None


@pytest.mark.exercise("tbptt_loss")
def test_tbptt_loss_carries_the_state_per_mode_and_restarts():
    model = CharRNN(10, 4, 6, 1, cell="rnn", dtype="float64")
    ids = rng.integers(0, 10, size=200)
    windows = list(TBPTTLoader(ids, 2, 8))
    loss_fn = TBPTTLoss()
    state, expected = None, []
    for x, y, _ in windows[:3]:  # by hand: each window starts from the last one's final state
        logits, state = model(x, state)
        expected.append(nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1)))
    got = [loss_fn(model, b) for b in windows[:3]]
    for a, e in zip(got, expected):
        assert_close(a, e)
    got[2].backward()  # the carried state is detached: backward reaches this window only
    g = [to_numpy(p.grad).copy() for p in model.parameters()]
    model.zero_grad()
    _, s1 = model(windows[0][0])
    _, s2 = model(windows[1][0], s1)
    logits, _ = model(windows[2][0], s2.detach())
    nn.functional.cross_entropy(logits.reshape(-1, 10), windows[2][1].reshape(-1)).backward()
    for a, p in zip(g, model.parameters()):
        assert_close(a, p.grad)
    # evaluation keeps its own state: it starts fresh and leaves the training state alone
    model.eval()
    assert_close(loss_fn(model, windows[0]), expected[0])
    model.train()
    assert_close(loss_fn(model, windows[3]), _next_loss(model, windows, 4))
    # a first window starts over from zeros
    assert_close(loss_fn(model, windows[0]), expected[0])


def _next_loss(model, windows, n):
    """The loss of window n-1 after running windows 0..n-2 with the state carried."""
    state = None
    for x, _, _ in windows[: n - 1]:
        _, state = model(x, state)
    x, y, _ = windows[n - 1]
    logits, _ = model(x, state)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _torch_char_model(model, cell):
    """The same CharRNN written with torch.nn, with our weights."""
    rnn = model.rnn
    stack = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(model.vocab_size, model.embedding.embedding_dim)
            self.rnn = stack(rnn.input_size, rnn.hidden_size, rnn.num_layers, batch_first=True)
            self.head = torch.nn.Linear(rnn.hidden_size, model.vocab_size)

        def forward(self, idx, state=None):
            out, state = self.rnn(self.embedding(idx), state)
            return self.head(out), state

    twin = Twin().double()
    twin.load_state_dict({k: torch.tensor(to_numpy(v)) for k, v in model.state_dict().items()})
    return twin


def _torch_detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def run_training_parity(cell, optimizer, steps, clip, lr, layers=2):
    """Train our CharRNN (train_step with TBPTTLoss, as the chapters do) and its torch twin on
    the same TBPTT windows; the losses of every step, and both models' validation losses."""
    V = 20
    # a random phrase repeated: learnable from context, so the loss really moves
    ids = np.resize(rng.integers(0, V, size=11), 4 * 16 * steps + 1)
    model = CharRNN(V, 8, 12, layers, cell=cell, dtype="float64")
    twin = _torch_char_model(model, cell)
    opt = getattr(optim, optimizer)(model.parameters(), lr=lr)
    topt = getattr(torch.optim, optimizer)(twin.parameters(), lr=lr)
    loss_fn, tstate = TBPTTLoss(), None
    ours, theirs = [], []
    for x, y, first in TBPTTLoader(ids, 4, 16):
        ours.append(train_step(model, opt, (x, y, first), loss_fn=loss_fn, clip_grad_norm=clip))
        logits, tstate = twin(torch.tensor(to_numpy(x)), _torch_detach(tstate))
        tl = torch.nn.functional.cross_entropy(
            logits.reshape(-1, V), torch.tensor(to_numpy(y)).reshape(-1)
        )
        topt.zero_grad()
        tl.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(twin.parameters(), clip)
        topt.step()
        theirs.append(tl.item())
    return np.array(ours), np.array(theirs)


@pytest.mark.exercise("tbptt_loss")
def test_tbptt_training_with_sgd_and_clipping_matches_torch():
    # a large learning rate and a small clip: clipping is active on every step
    ours, theirs = run_training_parity("rnn", "SGD", steps=10, clip=0.1, lr=2.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours[-1] < ours[0]


@pytest.mark.exercise("tbptt_loss")
def test_tbptt_evaluation_carries_the_state_like_torch():
    model = CharRNN(12, 4, 6, 2, cell="rnn", dtype="float64")
    twin = _torch_char_model(model, "rnn")
    ids = rng.integers(0, 12, size=400)
    ours = evaluate(model, TBPTTLoader(ids, 3, 10), TBPTTLoss(), max_batches=6)
    total, state = 0.0, None
    with torch.no_grad():
        for x, y in list(tbptt_batches(ids, 3, 10))[:6]:
            logits, state = twin(torch.tensor(to_numpy(x)), state)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, 12), torch.tensor(to_numpy(y)).reshape(-1)
            ).item()
    assert np.isclose(ours, total / 6, rtol=1e-10)


# ---- the model's measurements and sampling ------------------------------------------------------
def test_hidden_grad_norms_match_torch():
    model = CharRNN(10, 4, 6, 2, cell="rnn", dtype="float64")
    twin = _torch_char_model(model, "rnn")
    x = tt.randint(0, 10, (3, 12))
    y = tt.randint(0, 10, (3, 12))
    norms = model.hidden_grad_norms(x, y)
    assert norms.shape == (2, 12)
    # the same quantity in torch: run the cells by hand and ask autograd for dL/dh_t
    xt = twin.embedding(torch.tensor(to_numpy(x)))
    hs = [[None] * 12 for _ in range(2)]
    h = [torch.zeros(3, 6, dtype=torch.float64) for _ in range(2)]
    for t in range(12):
        inp = xt[:, t]
        for layer in range(2):
            w = [
                getattr(twin.rnn, f"{n}_l{layer}")
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            h[layer] = torch.tanh(inp @ w[0].T + w[2] + h[layer] @ w[1].T + w[3])
            hs[layer][t] = inp = h[layer]
    loss = torch.nn.functional.cross_entropy(twin.head(inp), torch.tensor(to_numpy(y))[:, -1])
    grads = torch.autograd.grad(loss, [g for row in hs for g in row])
    expected = np.array([g.norm().item() for g in grads]).reshape(2, 12)
    np.testing.assert_allclose(norms, expected, rtol=1e-9)


def test_sampling_follows_softmax_with_temperature():
    model = CharRNN(6, 4, 8, 1, cell="rnn", dtype="float64")
    prompt = np.array([[1, 2, 3]])
    logits, _ = model(tt.tensor(prompt))
    last = to_numpy(logits.detach())[0, -1]
    for temperature in (0.5, 1.0, 2.0):
        p = np.exp(last / temperature - (last / temperature).max())
        p /= p.sum()
        n = 4000
        out = sample(model, np.repeat(prompt, n, 0), 1, temperature=temperature)
        assert out.shape == (n, 4)
        np.testing.assert_array_equal(to_numpy(out)[:, :3], np.repeat(prompt, n, 0))
        freq = np.bincount(to_numpy(out)[:, 3], minlength=6) / n
        assert np.abs(freq - p).max() < 0.04, (temperature, freq, p)  # ~5 sigma at n=4000
    # temperature 0 and top_k=1 are greedy: each step takes the argmax of the model's logits
    greedy = to_numpy(sample(model, prompt, 5, temperature=0))
    for t in range(3, 8):
        logits, _ = model(tt.tensor(greedy[:, :t]))
        assert greedy[0, t] == int(to_numpy(logits.detach())[0, -1].argmax())
    top1 = to_numpy(sample(model, prompt, 5, temperature=1.5, top_k=1))
    np.testing.assert_array_equal(top1, greedy)
