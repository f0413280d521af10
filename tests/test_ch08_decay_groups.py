"""Chapter 08: weight-decay parameter groups (nanoGPT's rule: decay dim >= 2 only)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import to_numpy

import tinytorch as tt
from tinytorch import nn
from tinytorch.models import GPT, GPTConfig
from tinytorch.optim.groups import decay_param_groups

pytestmark = pytest.mark.ch08


def _ids(params):
    return [id(p) for p in params]


def test_gpt_groups_are_nanogpts_split():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, bias=True))
    decay, no_decay = decay_param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[i] for i in _ids(decay["params"])}
    spared = {names[i] for i in _ids(no_decay["params"])}
    assert decayed == {n for n, p in model.named_parameters() if p.ndim >= 2}
    assert "transformer.wte.weight" in decayed and "transformer.h.0.attn.c_attn.weight" in decayed
    assert all(n.endswith(".bias") or ".ln_" in n for n in spared)
    assert "transformer.ln_f.weight" in spared and "transformer.h.1.mlp.c_fc.bias" in spared
    # every parameter exactly once (the tied lm_head/wte matrix too), in the model's order
    order = _ids(model.parameters())
    assert sorted(_ids(decay["params"]) + _ids(no_decay["params"])) == sorted(order)
    assert _ids(decay["params"]) == [i for i in order if i in set(_ids(decay["params"]))]
    assert _ids(decay["params"]) == _ids(model.optimizer_groups(0.1)[0]["params"])


def test_no_decay_modules_spares_embeddings_and_frozen_params_are_left_out():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    model[3].bias.requires_grad_(False)
    decay, no_decay = decay_param_groups(model, 0.05, no_decay_modules=(nn.Embedding,))
    assert _ids(decay["params"]) == _ids([model[1].weight, model[3].weight])
    assert _ids(no_decay["params"]) == _ids(
        [model[0].weight, model[1].bias, model[2].weight, model[2].bias]
    )
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        decay_param_groups(model, -1.0)


def test_adamw_decays_only_the_first_group():
    """With zero gradients Adam's step is 0, so what moves is the decoupled decay alone."""
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    before = {n: to_numpy(p).copy() for n, p in model.named_parameters()}
    lr, wd = 0.1, 0.5
    opt = tt.optim.AdamW(decay_param_groups(model, wd), lr=lr)
    for p in model.parameters():
        p.grad = tt.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = (1 - lr * wd) if p.ndim >= 2 else 1.0
        np.testing.assert_allclose(to_numpy(p), before[n] * factor, rtol=1e-6, err_msg=n)
