"""Chapter 07: Transformer encoder/decoder layers, their stacks and nn.Transformer.

Each is compared with torch.nn's module after copying its state_dict: the output and the
gradients of the inputs and of every parameter, post-norm and pre-norm, relu and gelu,
batch_first both ways, with masks, in float64 and float32 (rtol 1e-4: a stack of layers
rounds more than a single op).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn

pytestmark = [pytest.mark.ch07, pytest.mark.filterwarnings("ignore::UserWarning")]

E, H, FF, N, S, T = 8, 2, 16, 3, 5, 4
TDTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def tol(dtype):
    return {} if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)


def _build(kind, dtype, **kw):
    td = TDTYPE[dtype]
    layer_kw = dict(dim_feedforward=FF, dropout=0.0, **kw)
    if kind == "encoder_layer":
        ref, ours = (
            torch.nn.TransformerEncoderLayer(E, H, dtype=td, **layer_kw),
            nn.TransformerEncoderLayer(E, H, **layer_kw),
        )
    elif kind == "decoder_layer":
        ref, ours = (
            torch.nn.TransformerDecoderLayer(E, H, dtype=td, **layer_kw),
            nn.TransformerDecoderLayer(E, H, **layer_kw),
        )
    elif kind == "encoder":
        ref = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(E, H, dtype=td, **layer_kw),
            2,
            torch.nn.LayerNorm(E, dtype=td),
            enable_nested_tensor=False,
        )
        ours = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(E, H, **layer_kw), 2, nn.LayerNorm(E)
        )
    elif kind == "decoder":
        ref = torch.nn.TransformerDecoder(
            torch.nn.TransformerDecoderLayer(E, H, dtype=td, **layer_kw), 2
        )
        ours = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, **layer_kw), 2)
    else:
        ref = torch.nn.Transformer(E, H, 2, 2, dtype=td, **layer_kw)
        ours = nn.Transformer(E, H, 2, 2, **layer_kw)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.to(dtype).load_state_dict(ref.state_dict())
    return ours, ref


def _compare(ours, ref, inputs, dtype, device, **masks):
    ours.to(device)
    tin = [tt.tensor(a, device=device, requires_grad=True) for a in inputs]
    pin = [torch.tensor(a, requires_grad=True) for a in inputs]
    tm = {
        k: tt.tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in masks.items()
    }
    pm = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in masks.items()}
    out, ref_out = ours(*tin, **tm), ref(*pin, **pm)
    assert_close(out, ref_out, **tol(dtype))
    g = np.random.default_rng().standard_normal(ref_out.shape).astype(dtype)
    out.backward(tt.tensor(g, device=device))
    ref_out.backward(torch.tensor(g))
    for a, b in zip(tin, pin):
        assert_close(a.grad, b.grad, **tol(dtype))
    mine = dict(ours.named_parameters())
    assert set(mine) == {n for n, _ in ref.named_parameters()}
    for name, p in ref.named_parameters():
        assert_close(mine[name].grad, p.grad, msg=name, **tol(dtype))


def _seq(n, length, batch_first, dtype):
    shape = (n, length, E) if batch_first else (length, n, E)
    return np.random.default_rng().standard_normal(shape).astype(dtype)


CONFIGS = [  # (norm_first, activation, batch_first)
    (False, "relu", False),
    (False, "gelu", True),
    (True, "relu", True),
    (True, "gelu", False),
]


@pytest.mark.exercise("residual_norms")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "kind", ["encoder_layer", "decoder_layer", "encoder", "decoder", "transformer"]
)
@pytest.mark.parametrize("norm_first, activation, batch_first", CONFIGS)
def test_matches_torch(kind, norm_first, activation, batch_first, dtype, device):
    ours, ref = _build(
        kind, dtype, norm_first=norm_first, activation=activation, batch_first=batch_first
    )
    src, tgt = _seq(N, S, batch_first, dtype), _seq(N, T, batch_first, dtype)
    inputs = {
        "encoder_layer": [src],
        "encoder": [src],
        "decoder_layer": [tgt, src],
        "decoder": [tgt, src],
        "transformer": [src, tgt],
    }[kind]
    _compare(ours, ref, inputs, dtype, device)


@pytest.mark.exercise("residual_norms")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [False, True])
def test_masks_match_torch(norm_first, dtype, device):
    pad_src = np.zeros((N, S), dtype=bool)
    pad_src[0, 3:], pad_src[2, 4] = True, True
    pad_tgt = np.zeros((N, T), dtype=bool)
    pad_tgt[1, 3] = True
    causal = to_numpy(nn.generate_square_subsequent_mask(T, dtype=dtype))
    ours, ref = _build("encoder", dtype, norm_first=norm_first, batch_first=True)
    _compare(
        ours,
        ref,
        [_seq(N, S, True, dtype)],
        dtype,
        device,
        mask=np.triu(np.ones((S, S), dtype=bool), 1),
        src_key_padding_mask=pad_src,
    )
    ours, ref = _build("decoder", dtype, norm_first=norm_first, batch_first=True)
    _compare(
        ours,
        ref,
        [_seq(N, T, True, dtype), _seq(N, S, True, dtype)],
        dtype,
        device,
        tgt_mask=causal,
        tgt_is_causal=True,
        tgt_key_padding_mask=pad_tgt,
        memory_key_padding_mask=pad_src,
        memory_mask=np.random.default_rng().standard_normal((T, S)).astype(dtype),
    )
    ours, ref = _build("transformer", dtype, norm_first=norm_first, batch_first=False)
    _compare(
        ours,
        ref,
        [_seq(N, S, False, dtype), _seq(N, T, False, dtype)],
        dtype,
        device,
        tgt_mask=causal,
        src_key_padding_mask=pad_src,
        memory_key_padding_mask=pad_src,
    )


def test_square_subsequent_mask_and_layer_copies():
    assert_close(
        nn.Transformer.generate_square_subsequent_mask(5),
        torch.nn.Transformer.generate_square_subsequent_mask(5),
    )
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, FF), 3)
    w = [to_numpy(layer.linear1.weight.detach()) for layer in enc.layers]
    assert all(np.array_equal(w[0], x) for x in w)  # deep copies start equal...
    with tt.no_grad():
        enc.layers[0].linear1.weight.fill_(0.0)
    assert np.array_equal(to_numpy(enc.layers[1].linear1.weight.detach()), w[1])  # ...apart
    assert len({id(layer.linear1.weight) for layer in enc.layers}) == 3


def test_dropout_acts_in_training_only():
    layer = nn.TransformerEncoderLayer(E, H, FF, dropout=0.5, batch_first=True).double()
    x = tt.randn(2, S, E, dtype="float64")
    layer.eval()
    assert_close(layer(x), layer(x))
    layer.train()
    assert not np.allclose(to_numpy(layer(x)), to_numpy(layer(x)))
    with pytest.raises(ValueError, match="activation should be"):
        nn.TransformerEncoderLayer(E, H, activation="swish")
