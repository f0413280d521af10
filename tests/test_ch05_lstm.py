"""Chapter 05: LSTMCell, LSTM, GRUCell, GRU against torch.nn, and training parity of the
character LSTM with Adam. The comparison helpers (and their tolerances) are chapter 04's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close
from test_ch04_rnn import (
    GRID,
    _grid_id,
    check_cell,
    check_layer,
    check_stack,
    check_stack_float32,
    layer_gradcheck,
    run_training_parity,
)

import tinytorch as tt
from tinytorch import nn
from tinytorch.gradcheck import gradcheck
from tinytorch.models.char_rnn import CharRNN

pytestmark = pytest.mark.ch05


@pytest.mark.parametrize("cfg", GRID, ids=[_grid_id(p) for p in GRID])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_stack_matches_torch_float64(mode, cfg, device):
    layers, bf, bi, st, T = cfg
    check_stack(
        mode, layers=layers, batch_first=bf, bidirectional=bi, with_state=st, T=T, device=device
    )


@pytest.mark.parametrize("T", [1, 50])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_stack_matches_torch_float32(mode, T, bidirectional, device):
    check_stack_float32(mode, T, bidirectional, device)


# ---- the cells --------------------------------------------------------------------------------
CELLS = [
    pytest.param("LSTMCell", marks=pytest.mark.exercise("lstm_cell")),
    pytest.param("GRUCell", marks=pytest.mark.exercise("gru_cell")),
]


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("mode", CELLS)
def test_cell_matches_torch(mode, batched, with_state, dtype, device):
    check_cell(mode, batched=batched, with_state=with_state, dtype=dtype, device=device)
    check_cell(mode, batched=batched, with_state=with_state, dtype=dtype, device=device, bias=False)


@pytest.mark.parametrize("mode", CELLS)
def test_cell_gradcheck(mode):
    cell = getattr(nn, mode)(3, 2, dtype="float64")
    x = tt.randn(2, 3, dtype="float64", requires_grad=True)
    h = tt.randn(2, 2, dtype="float64", requires_grad=True)
    c = tt.randn(2, 2, dtype="float64", requires_grad=True)
    if mode == "LSTMCell":
        gradcheck(lambda x, h, c, *ps: cell(x, (h, c)), (x, h, c, *cell.parameters()))
    else:
        gradcheck(lambda x, h, *ps: cell(x, h), (x, h, *cell.parameters()))


# ---- one layer over time: the readable loop and the fused layers --------------------------------
@pytest.mark.exercise("lstm_time_loop")
@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_time_loop_matches_torch(reverse):
    check_layer("loop", "LSTM", reverse=reverse)
    check_layer("loop", "LSTM", reverse=reverse, bias=False, T=1)


@pytest.mark.parametrize("reverse", [False, True])
def test_gru_time_loop_matches_torch(reverse):
    check_layer("loop", "GRU", reverse=reverse)


@pytest.mark.exercise("fused_lstm_forward")
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_lstm_forward_matches_torch(reverse):
    check_layer("fused", "LSTM", reverse=reverse, grads=False)
    check_layer("fused", "LSTM", reverse=reverse, grads=False, bias=False, T=1)


def check_fused_backward(mode, reverse):
    """The fused layer's hand-written backward against torch (with biases over T=6, without
    over T=1) and against finite differences."""
    check_layer("fused", mode, reverse=reverse)
    check_layer("fused", mode, reverse=reverse, bias=False, T=1)
    layer_gradcheck(mode, reverse)


@pytest.mark.exercise("fused_lstm_backward")
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_lstm_backward_matches_torch_and_finite_differences(reverse):
    check_fused_backward("LSTM", reverse)


@pytest.mark.exercise("fused_gru_backward")
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_gru_backward_matches_torch_and_finite_differences(reverse):
    check_fused_backward("GRU", reverse)


# ---- the stacks ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode", [pytest.param("LSTM", marks=pytest.mark.exercise("lstm_time_loop")), "GRU"]
)
@pytest.mark.parametrize("T", [1, 50])
def test_step_by_step_path_matches_torch(mode, T):
    # fused=False runs lstm_cell / gru_cell once per step; autograd does BPTT
    check_stack(mode, layers=2, bidirectional=True, with_state=True, T=T, fused=False)
    check_stack(mode, layers=2, batch_first=True, with_state=False, T=T, fused=False)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_unbatched_and_no_bias_match_torch(mode, with_state):
    check_stack(mode, layers=2, bidirectional=True, with_state=with_state, T=7, unbatched=True)
    check_stack(mode, layers=2, bidirectional=True, with_state=with_state, T=7, bias=False)


@pytest.mark.exercise("dropout_between_layers")
@pytest.mark.parametrize("mode", ["RNN", "LSTM", "GRU"])
def test_dropout_between_layers_only_in_training(mode):
    stack = getattr(nn, mode)(4, 6, num_layers=2, dropout=0.5)
    x = tt.randn(5, 2, 4)
    tt.manual_seed(1)
    out, state = stack(x)
    # the same computation by hand: layer 0, dropout with the same random draws, layer 1
    l0, l1 = getattr(nn, mode)(4, 6), getattr(nn, mode)(6, 6)
    sd = stack.state_dict()
    l0.load_state_dict({k[:-1] + "0": v for k, v in sd.items() if k.endswith("0")})
    l1.load_state_dict({k[:-1] + "0": v for k, v in sd.items() if k.endswith("1")})
    tt.manual_seed(1)
    mid, s0 = l0(x)
    ref, s1 = l1(nn.functional.dropout(mid, 0.5, True))
    assert_close(out, ref)
    h_n = state[0] if mode == "LSTM" else state
    h0, h1 = (s0[0], s1[0]) if mode == "LSTM" else (s0, s1)
    assert_close(h_n, tt.cat([h0, h1], 0))
    assert not np.allclose(out.detach().numpy(), l1(mid)[0].detach().numpy())  # dropout acted
    stack.eval()  # no dropout: equals the undropped composition
    assert_close(stack(x)[0], l1(l0(x)[0])[0])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_state_dict_keys_and_shapes_match_torch(mode):
    ours = getattr(nn, mode)(5, 8, num_layers=2, bidirectional=True, batch_first=True)
    theirs = getattr(torch.nn, mode)(5, 8, num_layers=2, bidirectional=True, batch_first=True)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    # and loading ours into torch gives torch's module our function
    theirs.load_state_dict(
        {k: torch.tensor(v.detach().numpy()) for k, v in ours.state_dict().items()}
    )
    x = np.random.default_rng().standard_normal((2, 6, 5)).astype(np.float32)
    assert_close(ours(tt.tensor(x))[0], theirs(torch.tensor(x))[0], rtol=1e-4, atol=1e-5)


def test_lstm_training_with_adam_matches_torch_every_step():
    # 50 steps, float64, same initial weights and TBPTT windows, clipping on: the bar
    ours, theirs = run_training_parity("lstm", "Adam", steps=50, clip=1.0, lr=1e-2)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours[-1] < ours[0] - 0.3  # and it learned something


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train_like_torch(cell):
    ours, theirs = run_training_parity(cell, "Adam", steps=10, clip=1.0, lr=1e-2, layers=1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hidden_grad_norms_agree_with_the_fused_path(cell):
    # the probe measurement runs the cell functions; its last-step gradient must equal what
    # the fused layers give for dL_T/dh_T (the same loss, differentiated through the stack)
    model = CharRNN(10, 4, 6, 1, cell=cell, dtype="float64")
    x, y = tt.randint(0, 10, (3, 9)), tt.randint(0, 10, (3, 9))
    norms = model.hidden_grad_norms(x, y)
    out, _ = model.rnn(model.embedding(x))
    last = out[:, -1].detach().requires_grad_()
    nn.functional.cross_entropy(model.head(last), y[:, -1]).backward()
    assert np.isclose(norms[0, -1], float(np.sqrt((last.grad.numpy() ** 2).sum())), rtol=1e-10)
    assert norms.shape == (1, 9) and np.all(norms > 0)


def test_bad_inputs_name_expected_and_actual_shapes():
    lstm = nn.LSTM(5, 4, num_layers=2, batch_first=True)
    with pytest.raises(ValueError, match=r"expected 5, got 3.*\(2, 6, 3\)"):
        lstm(tt.randn(2, 6, 3))
    h, c = tt.randn(2, 2, 4), tt.randn(2, 2, 5)
    with pytest.raises(ValueError, match=r"\(2, 2, 4\).*\(2, 6, 5\).*got \(2, 2, 5\)"):
        lstm(tt.randn(2, 6, 5), (h, c))
    with pytest.raises(TypeError, match="tuple"):
        lstm(tt.randn(2, 6, 5), h)
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(6, 5\).*got \(2, 2, 4\).*2-D"):
        lstm(tt.randn(6, 5), (h, h))
    with pytest.raises(ValueError, match=r"3-D input \(B, T, input_size\).*got shape \(5,\)"):
        lstm(tt.randn(5))
    gru = nn.GRU(5, 4)
    with pytest.raises(ValueError, match=r"\(1, 3, 4\).*got \(1, 2, 4\)"):
        gru(tt.randn(6, 3, 5), tt.randn(1, 2, 4))
    cell = nn.LSTMCell(5, 4)
    with pytest.raises(ValueError, match=r"\(B, 5\) or \(5,\), got shape \(2, 3, 5\)"):
        cell(tt.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\), got \(4,\)"):
        cell(tt.randn(3, 5), (tt.randn(3, 4), tt.randn(4)))
    with pytest.raises(TypeError, match=r"float64 on cpu but the weights are float32"):
        lstm(tt.randn(2, 6, 5, dtype="float64"))
