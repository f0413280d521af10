"""Chapter 07: the GPT model against a PyTorch implementation of the same architecture.

`TorchGPT` below is nanoGPT's model.py written out in torch (same module names, so the same
state_dict keys). Loading its weights into tinytorch's GPT must give the same logits, loss
and gradient for every parameter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as tnn
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.models import GPT, GPTConfig
from tinytorch.models.gpt import Block, CausalSelfAttention, KVCache

pytestmark = pytest.mark.ch07


class TorchLayerNorm(tnn.Module):
    def __init__(self, n, bias):
        super().__init__()
        self.weight = tnn.Parameter(torch.ones(n))
        self.bias = tnn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        return tnn.functional.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class TorchAttention(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = tnn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = tnn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head = c.n_head

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = tnn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class TorchMLP(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = tnn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = tnn.GELU()
        self.c_proj = tnn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class TorchBlock(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1, self.attn = TorchLayerNorm(c.n_embd, c.bias), TorchAttention(c)
        self.ln_2, self.mlp = TorchLayerNorm(c.n_embd, c.bias), TorchMLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(tnn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = tnn.ModuleDict(
            dict(
                wte=tnn.Embedding(c.vocab_size, c.n_embd),
                wpe=tnn.Embedding(c.block_size, c.n_embd),
                h=tnn.ModuleList([TorchBlock(c) for _ in range(c.n_layer)]),
                ln_f=TorchLayerNorm(c.n_embd, c.bias),
            )
        )
        self.lm_head = tnn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = tnn.functional.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1
        )
        return logits, loss


def _pair(bias, dtype, device):
    config = GPTConfig(block_size=12, vocab_size=17, n_layer=2, n_head=2, n_embd=8, bias=bias)
    ours = GPT(config).to(dtype)
    ref = TorchGPT(config).to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
    with torch.no_grad():  # random non-trivial weights (LayerNorm gains too)
        for p in ref.parameters():
            p.normal_(0.0, 0.3)
    ours.load_state_dict(ref.state_dict())
    return config, ours.to(device), ref


@pytest.mark.exercise("gpt_forward")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_matches_torch_twin(bias, dtype, device):
    config, ours, ref = _pair(bias, dtype, device)
    rng = np.random.default_rng()
    idx = rng.integers(0, config.vocab_size, (3, 10))
    targets = rng.integers(0, config.vocab_size, (3, 10))
    targets[0, :4] = -1  # ignored positions, as nanoGPT allows
    logits, loss = ours(tt.tensor(idx, device=device), tt.tensor(targets, device=device))
    ref_logits, ref_loss = ref(torch.tensor(idx), torch.tensor(targets))
    tol = {} if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)
    assert_close(logits, ref_logits, **tol)
    assert_close(loss, ref_loss, **tol)
    loss.backward()
    ref_loss.backward()
    mine = dict(ours.named_parameters())
    theirs = dict(ref.named_parameters())
    assert list(mine) == list(theirs)  # same order; the tied matrix once, as wte.weight
    for name, p in theirs.items():
        assert_close(mine[name].grad, p.grad, msg=name, **tol)


def test_state_dict_keys_are_nanogpts():
    for bias in (False, True):
        model = GPT(
            GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, bias=bias)
        )
        keys = set(model.state_dict())
        expected = {
            "transformer.wte.weight",
            "transformer.wpe.weight",
            "transformer.ln_f.weight",
            "lm_head.weight",
        }
        for i in range(2):
            expected |= {
                f"transformer.h.{i}.{m}.weight"
                for m in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
            }
        if bias:
            expected |= {
                k.replace(".weight", ".bias")
                for k in expected
                if not k.endswith(("wte.weight", "wpe.weight", "lm_head.weight"))
            }
        assert keys == expected
        assert list(model.state_dict()) == list(TorchGPT(model.config).state_dict())  # order


@pytest.mark.exercise("gpt_forward")
def test_weight_tying_and_gpt2_init():
    config = GPTConfig(block_size=64, vocab_size=300, n_layer=3, n_head=4, n_embd=64, bias=True)
    model = GPT(config)
    assert model.lm_head.weight is model.transformer.wte.weight
    sd = model.state_dict()
    assert sd["lm_head.weight"] is sd["transformer.wte.weight"]
    wte = to_numpy(model.transformer.wte.weight.detach())
    assert abs(wte.std() - 0.02) < 0.002
    c_proj = to_numpy(model.transformer.h[0].mlp.c_proj.weight.detach())
    assert abs(c_proj.std() - 0.02 / math.sqrt(2 * config.n_layer)) < 0.001
    assert not to_numpy(model.transformer.h[1].attn.c_attn.bias.detach()).any()
    n_matrices = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    assert model.get_num_params(non_embedding=False) == sum(p.numel() for p in model.parameters())
    assert n_matrices < model.get_num_params(non_embedding=False)
    groups = model.optimizer_groups(0.1)
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert sum(p.numel() for p in groups[0]["params"]) == n_matrices


def test_dropout_is_off_in_eval_and_context_too_long_is_a_clear_error():
    config = GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, dropout=0.5)
    model = GPT(config).double()
    idx = tt.randint(0, 11, (2, 8))
    model.eval()
    assert_close(model(idx)[0], model(idx)[0])
    model.train()
    assert not np.allclose(to_numpy(model(idx)[0].detach()), to_numpy(model(idx)[0].detach()))
    with pytest.raises(ValueError, match="length 9.*block_size is only 8"):
        model(tt.randint(0, 11, (1, 9)))
    with pytest.raises(ValueError, match=r"targets have shape \(2, 7\).*\(2, 8\)"):
        model(idx, tt.randint(0, 11, (2, 7)))


def test_loads_a_nanogpt_checkpoint_dict():
    config = GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, bias=False)
    ref = TorchGPT(config)
    state = {"_orig_mod." + k: v for k, v in ref.state_dict().items()}  # torch.compile's
    state["_orig_mod.transformer.h.0.attn.bias"] = torch.ones(1, 1, 8, 8)  # old mask buffer
    args = dict(vars(config))
    model = GPT.from_nanogpt({"model_args": args, "model": state})
    idx = np.random.default_rng().integers(0, 11, (2, 8))
    logits, _ = model(tt.tensor(idx))
    ref_logits, _ = ref(torch.tensor(idx), torch.tensor(idx))
    assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)


def _module_pair(ours, ref, dtype, device):
    """Random non-trivial torch weights, copied into ours (same names)."""
    ref = ref.to({np.float64: torch.float64, np.float32: torch.float32}[dtype])
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.3)
    ours = ours.to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ours.to(device), ref


def _compare_module(ours, ref, x, device):
    """Output, the input's gradient and every parameter's, float64 at the suite's tolerance."""
    tx = tt.tensor(x, device=device, requires_grad=True)
    px = torch.tensor(x, requires_grad=True)
    out, ref_out = ours(tx), ref(px)
    assert_close(out, ref_out.detach())
    g = np.random.default_rng().standard_normal(x.shape)
    out.backward(tt.tensor(g, device=device))
    ref_out.backward(torch.tensor(g))
    assert_close(tx.grad, px.grad, msg="input")
    mine = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        assert_close(mine[name].grad, p.grad, msg=name)


@pytest.mark.exercise("causal_self_attention")
@pytest.mark.parametrize("bias", [True, False])
def test_causal_self_attention_matches_torch(bias, device):
    config = GPTConfig(block_size=12, vocab_size=17, n_layer=1, n_head=2, n_embd=8, bias=bias)
    ours, ref = _module_pair(
        CausalSelfAttention(config), TorchAttention(config), np.float64, device
    )
    x = np.random.default_rng().standard_normal((3, 7, 8))
    _compare_module(ours, ref, x, device)


@pytest.mark.exercise("causal_self_attention")
def test_causal_self_attention_does_not_look_ahead(device):
    config = GPTConfig(block_size=12, vocab_size=17, n_layer=1, n_head=2, n_embd=8)
    attn = CausalSelfAttention(config).double().to(device)
    x = np.random.default_rng().standard_normal((2, 6, 8))
    y = to_numpy(attn(tt.tensor(x, device=device)).detach())
    x[:, 4:] += 5.0  # change the future of positions 0..3
    y2 = to_numpy(attn(tt.tensor(x, device=device)).detach())
    assert_close(y2[:, :4], y[:, :4])
    assert not np.allclose(y2[:, 4:], y[:, 4:])


@pytest.mark.exercise("block_residuals")
@pytest.mark.parametrize("bias", [True, False])
def test_block_matches_torch(bias, device):
    config = GPTConfig(block_size=12, vocab_size=17, n_layer=1, n_head=2, n_embd=8, bias=bias)
    ours, ref = _module_pair(Block(config), TorchBlock(config), np.float64, device)
    x = np.random.default_rng().standard_normal((2, 5, 8))
    _compare_module(ours, ref, x, device)


@pytest.mark.exercise("kv_cache")
def test_kv_cache_update_stores_and_returns_everything_so_far(device):
    config = GPTConfig(block_size=6, vocab_size=5, n_layer=2, n_head=2, n_embd=4)
    cache = KVCache(config, 3, np.float64, device)
    rng = np.random.default_rng()
    k1, v1 = rng.standard_normal((3, 2, 4, 2)), rng.standard_normal((3, 2, 4, 2))
    k, v = cache.update(1, tt.tensor(k1, device=device), tt.tensor(v1, device=device))
    assert_close(k, k1)
    assert_close(v, v1)
    cache.pos = 4  # GPT.forward advances pos once every layer has stored its keys
    k2, v2 = rng.standard_normal((3, 2, 1, 2)), rng.standard_normal((3, 2, 1, 2))
    k, v = cache.update(1, tt.tensor(k2, device=device), tt.tensor(v2, device=device))
    assert_close(k, np.concatenate([k1, k2], axis=2))
    assert_close(v, np.concatenate([v1, v2], axis=2))
    assert not to_numpy(tt.tensor(cache.k[0])).any()  # layer 0 untouched


@pytest.mark.exercise("kv_cache")
def test_attention_with_a_cache_equals_the_full_causal_attention(device):
    """Feeding positions in pieces (a prompt, single tokens, a chunk) through the cache gives,
    for each new position, what the full causal attention gives it."""
    config = GPTConfig(block_size=10, vocab_size=5, n_layer=1, n_head=2, n_embd=8)
    attn = CausalSelfAttention(config).double().to(device).eval()
    x = np.random.default_rng().standard_normal((2, 10, 8))
    with tt.no_grad():
        full = to_numpy(attn(tt.tensor(x, device=device)))
        cache = KVCache(config, 2, np.float64, device)
        for a, b in [(0, 3), (3, 4), (4, 5), (5, 9), (9, 10)]:
            y = attn(tt.tensor(x[:, a:b], device=device), cache)
            cache.pos += b - a
            assert_close(y, full[:, a:b], msg=f"positions {a}..{b}")
