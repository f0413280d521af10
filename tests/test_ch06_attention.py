"""Chapter 06: scaled dot-product attention, multi-head attention, positional encodings.

Oracles: PyTorch with the same inputs and copied weights (outputs and every gradient, float64
at the suite's tolerance, float32 at rtol 1e-4 since attention sums many terms), and finite
differences for the composed attention.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import nn
from tinytorch.gradcheck import gradcheck
from tinytorch.nn import functional as F
from tinytorch.nn.functional_attention import attention_with_weights, causal_mask

pytestmark = [pytest.mark.ch06, pytest.mark.filterwarnings("ignore:Support for mismatched")]

DTYPES = [np.float64, np.float32]
TDTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def tol(dtype):
    return {} if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)


def _pair(a, device, grad=True):
    """The same array as a tinytorch tensor (on device) and a torch tensor."""
    return (tt.tensor(a, device=device, requires_grad=grad), torch.tensor(a, requires_grad=grad))


def _masks(rng, L, S, dtype):
    """Every kind of SDPA mask, in SDPA's convention (bool True = may attend)."""
    fully = rng.random((L, S)) > 0.4
    fully[1] = False  # one query with no key at all: output 0, not NaN
    add = rng.standard_normal((2, 1, L, S)).astype(dtype)
    add_inf = np.where(rng.random((L, S)) > 0.3, 0.0, -np.inf).astype(dtype)
    add_inf[0] = -np.inf
    return {
        "none": {},
        "causal": {"is_causal": True},
        "bool_LS": {"attn_mask": rng.random((L, S)) > 0.3},
        "bool_full": {"attn_mask": rng.random((2, 3, L, S)) > 0.3},
        "bool_fully_masked_row": {"attn_mask": fully},
        "float_broadcast": {"attn_mask": add},
        "float_with_inf": {"attn_mask": add_inf},
    }


@pytest.mark.exercise("sdpa")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kind",
    [
        "none",
        "causal",
        "bool_LS",
        "bool_full",
        "bool_fully_masked_row",
        "float_broadcast",
        "float_with_inf",
    ],
)
def test_sdpa_matches_torch(kind, dtype, device):
    rng = np.random.default_rng()
    B, H, L, S, E, Ev = 2, 3, 5, 5 if kind == "causal" else 7, 4, 6
    q = rng.standard_normal((B, H, L, E)).astype(dtype)
    k = rng.standard_normal((B, H, S, E)).astype(dtype)
    v = rng.standard_normal((B, H, S, Ev)).astype(dtype)
    kw = _masks(rng, L, S, dtype)[kind]
    (tq, pq), (tk, pk), (tv, pv) = (_pair(a, device) for a in (q, k, v))
    tkw = {
        n: tt.tensor(m, device=device) if isinstance(m, np.ndarray) else m for n, m in kw.items()
    }
    pkw = {n: torch.tensor(m) if isinstance(m, np.ndarray) else m for n, m in kw.items()}
    out = F.scaled_dot_product_attention(tq, tk, tv, **tkw)
    ref = torch.nn.functional.scaled_dot_product_attention(pq, pk, pv, **pkw)
    assert_close(out, ref, **tol(dtype))
    g = rng.standard_normal(ref.shape).astype(dtype)
    out.backward(tt.tensor(g, device=device))
    ref.backward(torch.tensor(g))
    for name, a, b in (("q", tq, pq), ("k", tk, pk), ("v", tv, pv)):
        assert_close(a.grad, b.grad, msg=f"grad {name}", **tol(dtype))


@pytest.mark.exercise("sdpa")
@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_broadcast_batch_scale_and_mask_gradient(dtype, device):
    """Leading dims broadcast (one key/value set for every query batch), a custom scale, and
    the gradient into a learned additive mask (a position bias)."""
    rng = np.random.default_rng()
    q = rng.standard_normal((3, 2, 4, 5)).astype(dtype)
    k = rng.standard_normal((1, 2, 6, 5)).astype(dtype)
    v = rng.standard_normal((2, 6, 3)).astype(dtype)
    bias = rng.standard_normal((4, 6)).astype(dtype)
    (tq, pq), (tk, pk), (tv, pv), (tb, pb) = (_pair(a, device) for a in (q, k, v, bias))
    out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=tb, scale=0.3)
    ref = torch.nn.functional.scaled_dot_product_attention(pq, pk, pv, attn_mask=pb, scale=0.3)
    assert_close(out, ref, **tol(dtype))
    g = rng.standard_normal(ref.shape).astype(dtype)
    out.backward(tt.tensor(g, device=device))
    ref.backward(torch.tensor(g))
    for a, b in ((tq, pq), (tk, pk), (tv, pv), (tb, pb)):
        assert_close(a.grad, b.grad, **tol(dtype))


@pytest.mark.exercise("sdpa")
def test_sdpa_gradcheck_finite_differences():
    rng = np.random.default_rng()
    q, k, v = (tt.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(3))
    bias = tt.tensor(rng.standard_normal((3, 3)), requires_grad=True)
    assert gradcheck(
        lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), (q, k, v)
    )
    assert gradcheck(
        lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, attn_mask=m), (q, k, v, bias)
    )


@pytest.mark.exercise("sdpa")
def test_sdpa_dropout_zeroes_and_rescales_weights(device):
    """With dropout each attention weight is either dropped (0) or scaled by 1/(1-p), and the
    output is exactly those weights times V."""
    rng = np.random.default_rng()
    q, k, v = (tt.tensor(rng.standard_normal((2, 6, 4)), device=device) for _ in range(3))
    _, w_ref = attention_with_weights(q, k, v)
    out, w = attention_with_weights(q, k, v, dropout_p=0.5)
    w, w_ref = to_numpy(w), to_numpy(w_ref)
    dropped = w == 0
    assert dropped.any() and (~dropped).any()
    np.testing.assert_allclose(w[~dropped], 2 * w_ref[~dropped], rtol=1e-12)
    assert_close(out, w @ to_numpy(v))


def test_sdpa_bad_inputs_name_the_shapes():
    q, k, v = tt.randn(2, 3, 5, 4), tt.randn(2, 3, 7, 4), tt.randn(2, 3, 7, 6)
    with pytest.raises(ValueError, match=r"attn_mask has shape \(5, 6\).*\(2, 3, 5, 7\)"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=tt.ones(5, 6, dtype="bool"))
    with pytest.raises(ValueError, match="4 features but key has 3"):
        F.scaled_dot_product_attention(q, tt.randn(2, 3, 7, 3), v)
    with pytest.raises(ValueError, match="key has 7 positions but value has 6"):
        F.scaled_dot_product_attention(q, k, tt.randn(2, 3, 6, 6))
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(
            q, k, v, attn_mask=tt.ones(5, 7, dtype="bool"), is_causal=True
        )


def _mha_pair(E, h, dtype, device, **kw):
    ref = torch.nn.MultiheadAttention(E, h, dtype=TDTYPE[dtype], **kw)
    ours = nn.MultiheadAttention(E, h, **kw).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours.to(device), ref


def _mha_check(ours, ref, inputs, device, dtype, masks=None, **call):
    """Run both with the same inputs/masks; compare outputs, weights and every gradient."""
    masks = masks or {}
    tin = [tt.tensor(a, device=device, requires_grad=True) for a in inputs]
    pin = [torch.tensor(a, requires_grad=True) for a in inputs]
    if len(inputs) == 1:  # self-attention: the same tensor three times
        tin, pin = tin * 3, pin * 3
    out, w = ours(*tin, **{n: tt.tensor(m, device=device) for n, m in masks.items()}, **call)
    rout, rw = ref(*pin, **{n: torch.tensor(m) for n, m in masks.items()}, **call)
    assert_close(out, rout, **tol(dtype))
    if rw is None:
        assert w is None
    else:
        assert_close(w, rw, **tol(dtype))
    g = np.random.default_rng().standard_normal(rout.shape).astype(dtype)
    out.backward(tt.tensor(g, device=device))
    rout.backward(torch.tensor(g))
    for a, b in zip(tin[: len(inputs)], pin[: len(inputs)]):
        assert_close(a.grad, b.grad, **tol(dtype))
    mine = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        assert_close(mine[name].grad, p.grad, msg=name, **tol(dtype))


@pytest.mark.exercise("split_merge_heads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kdim", [None, 5])
def test_mha_matches_torch(batch_first, kdim, dtype, device):
    E, h, N, L, S = 8, 2, 3, 4, 6
    ours, ref = _mha_pair(E, h, dtype, device, batch_first=batch_first, kdim=kdim, vdim=kdim)
    assert list(ours.state_dict()) == list(ref.state_dict())
    rng = np.random.default_rng()

    def shape(n, seq, e):
        return (n, seq, e) if batch_first else (seq, n, e)

    inputs = [
        rng.standard_normal(shape(N, L, E)).astype(dtype),
        rng.standard_normal(shape(N, S, kdim or E)).astype(dtype),
        rng.standard_normal(shape(N, S, kdim or E)).astype(dtype),
    ]
    _mha_check(ours, ref, inputs, device, dtype)


@pytest.mark.exercise("mha_masks")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "masks",
    [
        "attn_bool",
        "attn_float_per_head",
        "padding_bool",
        "padding_float",
        "both",
        "causal",
        "causal_padding",
    ],
)
def test_mha_masks_match_torch(masks, dtype, device):
    E, h, N, L = 8, 2, 3, 5
    rng = np.random.default_rng()
    ours, ref = _mha_pair(E, h, dtype, device, batch_first=True)
    pad = np.zeros((N, L), dtype=bool)
    pad[0, 3:], pad[2, 4] = True, True  # padded keys: never fully masks a row
    blocked = rng.random((L, L)) > 0.6
    blocked[:, 0] = False  # key 0 is never blocked nor padded: no query loses every key
    causal = np.triu(np.ones((L, L), dtype=bool), 1)
    chosen, call = {
        "attn_bool": ({"attn_mask": blocked}, {}),
        "attn_float_per_head": ({"attn_mask": rng.standard_normal((N * h, L, L))}, {}),
        "padding_bool": ({"key_padding_mask": pad}, {}),
        "padding_float": ({"key_padding_mask": np.where(pad, -1e4, 0.0)}, {}),
        "both": ({"attn_mask": np.where(blocked, -np.inf, 0.0), "key_padding_mask": pad}, {}),
        "causal": ({"attn_mask": causal}, {"is_causal": True, "need_weights": False}),
        "causal_padding": ({"attn_mask": causal, "key_padding_mask": pad}, {"is_causal": True}),
    }[masks]
    chosen = {n: m.astype(dtype) if m.dtype != bool else m for n, m in chosen.items()}
    x = rng.standard_normal((N, L, E)).astype(dtype)
    _mha_check(ours, ref, [x], device, dtype, masks=chosen, **call)


@pytest.mark.exercise("split_merge_heads")
def test_mha_heads_unbatched_and_need_weights_false(device):
    E, h, L = 6, 3, 4
    ours, ref = _mha_pair(E, h, np.float64, device)
    rng = np.random.default_rng()
    q, kv = rng.standard_normal((L, E)), rng.standard_normal((5, E))
    _mha_check(ours, ref, [q, kv, kv], device, np.float64, average_attn_weights=False)
    _mha_check(ours, ref, [q, kv, kv], device, np.float64, need_weights=False)


@pytest.mark.exercise("mha_masks")
def test_mha_is_causal_without_mask_applies_the_causal_mask():
    E, L = 4, 5
    m = nn.MultiheadAttention(E, 2, batch_first=True).double()
    x = tt.randn(2, L, E, dtype="float64")
    blocked = tt.tensor(np.triu(np.ones((L, L), dtype=bool), 1))
    a, wa = m(x, x, x, is_causal=True)
    b, wb = m(x, x, x, attn_mask=blocked)
    assert_close(a, b)
    assert_close(wa, wb)


def test_mha_init_and_bad_masks():
    m = nn.MultiheadAttention(64, 4)
    w = to_numpy(m.in_proj_weight.detach())
    bound = math.sqrt(6.0 / (64 + 3 * 64))  # Glorot on the (3E, E) matrix, as PyTorch
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not to_numpy(m.in_proj_bias.detach()).any()
    assert not to_numpy(m.out_proj.bias.detach()).any()
    x = tt.randn(5, 2, 64)
    with pytest.raises(ValueError, match=r"expected \(L, S\) = \(5, 5\) or .*\(8, 5, 5\)"):
        m(x, x, x, attn_mask=tt.ones(4, 5, dtype="bool"))
    with pytest.raises(ValueError, match=r"expected \(N, S\) = \(2, 5\)"):
        m(x, x, x, key_padding_mask=tt.ones(5, 2, dtype="bool"))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        nn.MultiheadAttention(10, 3)


def _paper_table(max_len, d):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...), element by element."""
    pe = np.zeros((max_len, d))
    for pos in range(max_len):
        for col in range(d):
            angle = pos / 10000 ** ((col - col % 2) / d)
            pe[pos, col] = math.sin(angle) if col % 2 == 0 else math.cos(angle)
    return pe


@pytest.mark.exercise("sinusoidal_table")
@pytest.mark.parametrize("max_len, d", [(50, 16), (7, 5)])
def test_sinusoidal_encoding_formula(max_len, d):
    pe = nn.sinusoidal_positional_encoding(max_len, d, dtype="float64")
    assert_close(pe, _paper_table(max_len, d))


@pytest.mark.exercise("sinusoidal_table")
def test_sinusoidal_module_adds_the_table_and_checks_length(device):
    B, T, d = 2, 6, 8
    x = tt.randn(B, T, d, device=device, requires_grad=True)
    sin = nn.SinusoidalPositionalEncoding(d, max_len=10).to(device)
    table = _paper_table(10, d)
    assert_close(sin(x), to_numpy(x.detach()) + table[:T], rtol=1e-5, atol=1e-6)
    assert_close(sin(x, offset=3), to_numpy(x.detach()) + table[3 : 3 + T], rtol=1e-5, atol=1e-6)
    assert "pe" not in sin.state_dict()  # recomputed, not saved
    seq_first = nn.SinusoidalPositionalEncoding(d, max_len=10, batch_first=False).to(device)
    xt = tt.randn(T, B, d, device=device)
    assert_close(seq_first(xt), to_numpy(xt) + table[:T, None], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="12 positions.*max_len=10"):
        sin(tt.randn(1, 12, d, device=device))


@pytest.mark.exercise("learned_positions")
def test_learned_positions_add_rows_of_the_table_and_check_length(device):
    B, T, d = 2, 6, 8
    x = tt.randn(B, T, d, device=device, requires_grad=True)
    learned = nn.LearnedPositionalEmbedding(10, d).to(device)
    table = to_numpy(learned.weight.detach())
    y = learned(x)
    assert_close(y, to_numpy(x.detach()) + table[:T])
    assert_close(learned(x, offset=4), to_numpy(x.detach()) + table[4 : 4 + T])
    y.sum().backward()
    grad = to_numpy(learned.weight.grad)
    assert_close(grad[:T], np.full((T, d), float(B)))  # each row is used once per sequence
    assert not grad[T:].any()
    assert_close(x.grad, np.ones((B, T, d)))
    assert list(learned.state_dict()) == ["weight"]
    with pytest.raises(ValueError, match="12 positions but the table holds only max_len=10"):
        learned(tt.randn(1, 12, d, device=device))


@pytest.mark.exercise("causal_mask")
@pytest.mark.parametrize("L, S", [(1, 1), (4, 4), (3, 6), (5, 2)])
def test_causal_mask_is_the_lower_triangle(L, S, device):
    mask = causal_mask(L, S, device)
    expected = np.array([[j <= i for j in range(S)] for i in range(L)])
    assert mask.dtype == np.bool_ and tuple(mask.shape) == (L, S)
    assert np.array_equal(to_numpy(mask), expected)
    square = np.tril(np.ones((L, L), dtype=bool))  # S defaults to L
    assert np.array_equal(to_numpy(causal_mask(L, device=device)), square)


@pytest.mark.exercise("causal_mask")
def test_is_causal_hides_the_future(device):
    """Changing a later key or value never changes an earlier query's output."""
    rng = np.random.default_rng()
    q, k, v = (rng.standard_normal((2, 5, 4)) for _ in range(3))
    out = to_numpy(
        attention_with_weights(*(tt.tensor(a, device=device) for a in (q, k, v)), is_causal=True)[0]
    )
    k2, v2 = k.copy(), v.copy()
    k2[:, 3:], v2[:, 3:] = 10.0, -10.0  # the future of queries 0..2
    out2 = to_numpy(
        attention_with_weights(*(tt.tensor(a, device=device) for a in (q, k2, v2)), is_causal=True)[
            0
        ]
    )
    assert_close(out2[:, :3], out[:, :3])
    assert not np.allclose(out2[:, 3:], out[:, 3:])


@pytest.mark.exercise("sdpa")
@pytest.mark.parametrize("kind", ["none", "bool_LS", "bool_fully_masked_row", "float_broadcast"])
def test_composed_attention_and_its_weights_match_torch(kind, device):
    """attention_with_weights, the composed path itself (no fused kernel can take the call):
    output, weights = softmax(scores + mask) and the gradients of q, k, v."""
    rng = np.random.default_rng()
    L, S = 4, 6
    q, k, v = (rng.standard_normal((2, 3, n, 5)) for n in (L, S, S))
    kw = _masks(rng, L, S, np.float64)[kind]
    (tq, pq), (tk, pk), (tv, pv) = (_pair(a, device) for a in (q, k, v))
    mask = kw.get("attn_mask")
    out, w = attention_with_weights(
        tq, tk, tv, None if mask is None else tt.tensor(mask, device=device)
    )
    pm = None if mask is None else torch.tensor(mask)
    scores = pq @ pk.transpose(-2, -1) / math.sqrt(5)
    if pm is not None:
        scores = scores.masked_fill(~pm, -math.inf) if pm.dtype == torch.bool else scores + pm
    ref_w = torch.nan_to_num(torch.softmax(scores, -1))  # a fully masked row: weights 0
    ref = ref_w @ pv
    assert_close(w, ref_w.detach())
    assert_close(out, ref.detach())
    g = rng.standard_normal(ref.shape)
    out.backward(tt.tensor(g, device=device))
    ref.backward(torch.tensor(g))
    for name, a, b in (("q", tq, pq), ("k", tk, pk), ("v", tv, pv)):
        assert_close(a.grad, b.grad, msg=f"grad {name}")


@pytest.mark.exercise("in_projections")
@pytest.mark.parametrize("kdim", [None, 5])
def test_mha_in_projections_are_x_w_transposed_plus_b(kdim, device):
    """q = query W_q^T + b_q etc., with W_q, W_k, W_v the three row blocks of in_proj_weight
    (or q_proj_weight, k_proj_weight, v_proj_weight when kdim/vdim differ)."""
    E, N, L, S = 6, 2, 3, 4
    m = nn.MultiheadAttention(E, 2, kdim=kdim, vdim=kdim, batch_first=True).double().to(device)
    with tt.no_grad():
        m.in_proj_bias.normal_(0.0, 1.0)
    rng = np.random.default_rng()
    x = rng.standard_normal((N, L, E))
    kv = rng.standard_normal((N, S, kdim or E))
    b = to_numpy(m.in_proj_bias.detach())
    if kdim is None:
        w = to_numpy(m.in_proj_weight.detach())
        ws = [w[:E], w[E : 2 * E], w[2 * E :]]
    else:
        ws = [to_numpy(getattr(m, f"{n}_proj_weight").detach()) for n in "qkv"]
    inputs = [x, kv, kv]
    got = m._projections(*(tt.tensor(a, device=device) for a in inputs))
    for i, (out, a, w) in enumerate(zip(got, inputs, ws)):
        assert_close(out, a @ w.T + b[i * E : (i + 1) * E], msg="qkv"[i])
    if kdim is None:  # self-attention: the same tensor three times
        xt = tt.tensor(x, device=device)
        for i, out in enumerate(m._projections(xt, xt, xt)):
            assert_close(out, x @ ws[i].T + b[i * E : (i + 1) * E], msg="self " + "qkv"[i])
