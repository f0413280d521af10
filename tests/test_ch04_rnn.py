"""Chapter 04: RNNCell and RNN against torch.nn, truncated BPTT, clipping, sampling.

`check_stack` and `check_cell` (also used by chapter 05's tests) build the torch module, copy
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
from tinytorch.gradcheck import gradcheck
from tinytorch.models import char_rnn

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


@pytest.mark.parametrize("T", [1, 50])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_matches_torch_float32(T, bidirectional, device):
    check_stack(
        "RNN",
        layers=2,
        bidirectional=bidirectional,
        with_state=True,
        T=T,
        dtype="float32",
        device=device,
    )


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


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_unbatched_and_no_bias_match_torch(with_state, bidirectional):
    check_stack(
        "RNN", layers=2, bidirectional=bidirectional, with_state=with_state, T=7, unbatched=True
    )
    check_stack(
        "RNN", layers=2, bidirectional=bidirectional, with_state=with_state, T=7, bias=False
    )


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


def test_rnn_cell_and_layer_gradcheck():
    cell = nn.RNNCell(3, 4, dtype="float64")
    x = tt.randn(2, 3, dtype="float64", requires_grad=True)
    h = tt.randn(2, 4, dtype="float64", requires_grad=True)
    gradcheck(lambda x, h, *ps: cell(x, h), (x, h, *cell.parameters()))
    # the hand-written BPTT of the fused layer, both directions, against finite differences
    rnn = nn.RNN(3, 4, num_layers=2, bidirectional=True, dtype="float64")
    x = tt.randn(6, 2, 3, dtype="float64", requires_grad=True)
    h0 = tt.randn(4, 2, 4, dtype="float64", requires_grad=True)
    gradcheck(lambda x, h0, *ps: rnn(x, h0), (x, h0, *rnn.parameters()))


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


def test_dropout_between_layers_only_in_training():
    rnn = nn.RNN(4, 6, num_layers=2, dropout=0.5)
    x = tt.randn(5, 2, 4)
    tt.manual_seed(1)
    out, h_n = rnn(x)
    # the same computation by hand: layer 0, dropout with the same random draws, layer 1
    l0, l1 = nn.RNN(4, 6), nn.RNN(6, 6)
    l0.load_state_dict({k[:-1] + "0": v for k, v in rnn.state_dict().items() if k.endswith("0")})
    l1.load_state_dict({k[:-1] + "0": v for k, v in rnn.state_dict().items() if k.endswith("1")})
    tt.manual_seed(1)
    mid, h0 = l0(x)
    ref, h1 = l1(nn.functional.dropout(mid, 0.5, True))
    assert_close(out, ref)
    assert_close(h_n, tt.cat([h0, h1], 0))
    rnn.eval()  # no dropout: equals the undropped composition
    assert_close(rnn(x)[0], l1(l0(x)[0])[0])


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
    model = char_rnn.CharRNN(10, 4, 8, 1, cell="rnn")
    with pytest.raises(ValueError, match=r"\(B, T\), got shape \(7,\)"):
        model(tt.tensor([1, 2, 3, 4, 5, 6, 7]))


# ---- the character language model: TBPTT, clipping, sampling ---------------------------------
def test_tbptt_batches_are_consecutive_streams():
    ids = rng.integers(0, 50, size=1000)
    batches = list(char_rnn.tbptt_batches(ids, batch_size=4, seq_len=16))
    n = 999 // 4
    assert len(batches) == n // 16
    xs = np.concatenate([to_numpy(x) for x, _ in batches], axis=1)
    ys = np.concatenate([to_numpy(y) for _, y in batches], axis=1)
    for b in range(4):  # row b of window k+1 continues row b of window k
        np.testing.assert_array_equal(xs[b], ids[b * n : b * n + xs.shape[1]])
        np.testing.assert_array_equal(ys[b], ids[b * n + 1 : b * n + 1 + xs.shape[1]])


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
    """Train our CharRNN and its torch twin on the same TBPTT windows; losses per step."""
    V = 20
    # a random phrase repeated: learnable from context, so the loss really moves
    ids = np.resize(rng.integers(0, V, size=11), 4 * 16 * steps + 1)
    model = char_rnn.CharRNN(V, 8, 12, layers, cell=cell, dtype="float64")
    twin = _torch_char_model(model, cell)
    opt = getattr(optim, optimizer)(model.parameters(), lr=lr)
    topt = getattr(torch.optim, optimizer)(twin.parameters(), lr=lr)
    state = tstate = None
    ours, theirs = [], []
    for x, y in char_rnn.tbptt_batches(ids, 4, 16):
        loss, state, _ = char_rnn.train_step(model, opt, x, y, state, clip=clip)
        ours.append(loss)
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


def test_tbptt_training_with_sgd_and_clipping_matches_torch():
    # a large learning rate and a small clip: clipping is active on every step
    ours, theirs = run_training_parity("rnn", "SGD", steps=10, clip=0.1, lr=2.0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours[-1] < ours[0]


def test_detach_state_cuts_the_graph_but_keeps_values():
    model = char_rnn.CharRNN(10, 4, 6, 1, cell="rnn", dtype="float64")
    x = tt.randint(0, 10, (2, 5))
    _, state = model(x)
    cut = char_rnn.detach_state(state)
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
    h, c = char_rnn.detach_state((state, state * 2))
    assert not h.requires_grad and not c.requires_grad


def test_hidden_grad_norms_match_torch():
    model = char_rnn.CharRNN(10, 4, 6, 2, cell="rnn", dtype="float64")
    twin = _torch_char_model(model, "rnn")
    x = tt.randint(0, 10, (3, 12))
    y = tt.randint(0, 10, (3, 12))
    norms = char_rnn.hidden_grad_norms(model, x, y)
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
    model = char_rnn.CharRNN(6, 4, 8, 1, cell="rnn", dtype="float64")
    prompt = np.array([[1, 2, 3]])
    logits, _ = model(tt.tensor(prompt))
    last = to_numpy(logits.detach())[0, -1]
    for temperature in (0.5, 1.0, 2.0):
        p = np.exp(last / temperature - (last / temperature).max())
        p /= p.sum()
        n = 4000
        out = char_rnn.sample(model, np.repeat(prompt, n, 0), 1, temperature=temperature)
        assert out.shape == (n, 4)
        np.testing.assert_array_equal(to_numpy(out)[:, :3], np.repeat(prompt, n, 0))
        freq = np.bincount(to_numpy(out)[:, 3], minlength=6) / n
        assert np.abs(freq - p).max() < 0.04, (temperature, freq, p)  # ~5 sigma at n=4000
    # temperature 0 and top_k=1 are greedy: each step takes the argmax of the model's logits
    greedy = to_numpy(char_rnn.sample(model, prompt, 5, temperature=0))
    for t in range(3, 8):
        logits, _ = model(tt.tensor(greedy[:, :t]))
        assert greedy[0, t] == int(to_numpy(logits.detach())[0, -1].argmax())
    top1 = to_numpy(char_rnn.sample(model, prompt, 5, temperature=1.5, top_k=1))
    np.testing.assert_array_equal(top1, greedy)


def test_char_vocab_round_trip():
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    encode, decode, V = char_vocab_pair = char_rnn.char_vocab(text)
    assert V == len(set(text)) and len(char_vocab_pair) == 3
    ids = encode(text)
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < V
    assert decode(ids) == text
    with pytest.raises(KeyError, match="'Z'"):
        encode("Z")
