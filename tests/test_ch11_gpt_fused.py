"""The fused kernels wired into the library's modules (chapter 11 into chapters 06 and 07): a GPT
whose attention and LayerNorms go through the kernels gives the same logits, loss and gradients
as the composed tensor-op path, and nn.MultiheadAttention (need_weights=False, a key padding
mask) goes through the attention kernel and matches PyTorch's with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close

import tinytorch as tt
from tinytorch import kernels
from tinytorch.models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.ch11


def _ops_in_graph(root):
    """The names of the Functions in the graph behind `root` (before backward frees it)."""
    names, seen, stack = set(), set(), [root]
    while stack:
        t = stack.pop()
        if t._ctx is None or id(t) in seen:
            continue
        seen.add(id(t))
        names.add(type(t._ctx).__name__)
        stack.extend(i for i in t._ctx.inputs if isinstance(i, tt.Tensor))
    return names


def _run(model, idx, targets):
    model.zero_grad()
    logits, loss = model(idx, targets)
    names = _ops_in_graph(loss)
    loss.backward()
    return logits, loss, {k: p.grad for k, p in model.named_parameters()}, names


@pytest.mark.parametrize("head_dim", [32, 64])
def test_gpt_fused_equals_composed(device, head_dim):
    if not kernels.available():
        pytest.fail(f"kernel module did not build: {kernels.build_error()}")
    cfg = GPTConfig(
        vocab_size=50,
        block_size=40,
        n_layer=2,
        n_head=2,
        n_embd=2 * head_dim,
        dropout=0.0,
        bias=True,
    )
    model = GPT(cfg).to(device)
    rng = np.random.default_rng()
    idx = tt.tensor(rng.integers(0, 50, size=(3, 37)), device=device)
    targets = tt.tensor(rng.integers(0, 50, size=(3, 37)), device=device)
    fused = _run(model, idx, targets)
    fused_logits = fused[0].detach().numpy().copy()
    fused_loss = fused[1].item()
    fused_grads = {k: g.numpy().copy() for k, g in fused[2].items()}
    with kernels.composed():
        logits, loss, grads, composed_names = _run(model, idx, targets)
    # the fused path really ran: its graph holds the kernels' autograd Functions; the other not
    assert {"FlashAttention", "LayerNormFunction"} <= fused[3], fused[3]
    assert not {"FlashAttention", "LayerNormFunction"} & composed_names, composed_names
    # float32 through 2 blocks: rounding differs between the paths, so a deep-composition bound
    assert_close(fused_logits, logits.detach(), rtol=1e-4, atol=1e-5, msg="logits")
    assert abs(fused_loss - loss.item()) <= 1e-5 * abs(loss.item())
    for k, g in grads.items():
        assert_close(fused_grads[k], g, rtol=1e-3, atol=1e-5, msg=k)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_uses_the_kernel(device, batch_first):
    if not kernels.available():
        pytest.fail(f"kernel module did not build: {kernels.build_error()}")
    E, h, N, L = 128, 4, 3, 29  # head dim 32
    ref = torch.nn.MultiheadAttention(E, h, batch_first=batch_first, dtype=torch.float64)
    ours = tt.nn.MultiheadAttention(E, h, batch_first=batch_first)
    ours.load_state_dict({k: v.float().numpy() for k, v in ref.state_dict().items()})
    ours.to(device)
    rng = np.random.default_rng()
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E)).astype(np.float32)
    pad = rng.random((N, L)) < 0.3
    pad[:, 0] = False  # every sequence keeps a key: no fully masked row (torch gives NaN there)
    xt = tt.tensor(x, device=device, requires_grad=True)
    out, w = ours(xt, xt, xt, key_padding_mask=tt.tensor(pad, device=device), need_weights=False)
    assert w is None
    assert "FlashAttention" in _ops_in_graph(out), "MultiheadAttention did not use the kernel"
    g = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(tt.tensor(g, device=device))
    xr = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    rout, _ = ref(xr, xr, xr, key_padding_mask=torch.tensor(pad), need_weights=False)
    rout.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(out, rout, rtol=1e-4, atol=1e-5, msg="output")
    assert_close(xt.grad, xr.grad, rtol=1e-4, atol=1e-5, msg="input gradient")
    mine = dict(ours.named_parameters())
    for name, p in ref.named_parameters():
        assert_close(mine[name].grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
