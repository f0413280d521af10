"""GPT: a decoder-only Transformer language model in one file (chapter 07).

Follows nanoGPT's model.py (karpathy/nanoGPT), itself GPT-2: token and position embeddings,
n_layer pre-norm blocks (causal self-attention, then an MLP with GELU), a final LayerNorm and
a linear head whose weight is the token embedding's (weight tying). The module names are
nanoGPT's, so its state_dict keys are too (`transformer.wte.weight`,
`transformer.h.0.attn.c_attn.weight`, `lm_head.weight`, ...) and a nanoGPT checkpoint's
arrays load one to one (see `GPT.from_nanogpt`).

Everything is written with tinytorch ops on `xp` arrays, so `model.to("cuda")` runs it on
CuPy unchanged. Shapes: B batch, T time (positions), C = n_embd channels, nh heads, hs = C/nh.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .. import backend, creation, ops
from ..autograd import is_grad_enabled
from ..nn import functional as F
from ..nn import init
from ..nn.containers import ModuleDict, ModuleList
from ..nn.layers import GELU, Dropout, Embedding, LayerNorm, Linear
from ..nn.module import Module
from ..tensor import Tensor

__all__ = ["GPT", "GPTConfig", "KVCache"]


@dataclass
class GPTConfig:
    block_size: int = 1024  # the longest context the model reads (positions 0..block_size-1)
    vocab_size: int = 50304  # GPT-2's 50257 rounded up to a multiple of 64, as nanoGPT does
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: True)


class KVCache:
    """Keys and values already computed, per layer: (B, nh, block_size, hs) arrays filled up to
    `pos`. With it, each new token costs one position's work: its query attends over the
    cached keys instead of recomputing the whole prefix. Inference only (no gradients)."""

    def __init__(self, config: GPTConfig, batch_size: int, dtype, device: str):
        xp = backend.get_xp(device)
        hs = config.n_embd // config.n_head
        shape = (batch_size, config.n_head, config.block_size, hs)
        self.k = [xp.zeros(shape, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [xp.zeros(shape, dtype=dtype) for _ in range(config.n_layer)]
        self.block_size, self.pos = config.block_size, 0

    def reset(self) -> None:
        self.pos = 0

    def update(self, layer: int, k: Tensor, v: Tensor):
        """Store the new keys/values (B, nh, T, hs) at pos..pos+T; return all of them so far."""
        # BEGIN EXERCISE ch07: kv_cache - write k, v at pos..pos+T of layer's arrays, return 0..end
        end = self.pos + k.shape[2]
        self.k[layer][:, :, self.pos : end] = k.data
        self.v[layer][:, :, self.pos : end] = v.data
        out = Tensor._wrap(self.k[layer][:, :, :end]), Tensor._wrap(self.v[layer][:, :, :end])
        # END EXERCISE
        return out


class CausalSelfAttention(Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(
                f"GPT: n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})"
            )
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.layer = layer

    def forward(self, x, cache: KVCache | None = None):
        """x (B, T, C) -> (B, T, C); with a cache, x holds the new positions only."""
        B, T, C = x.shape
        nh = self.n_head
        p = self.dropout if self.training else 0.0
        # BEGIN EXERCISE ch07: causal_self_attention - c_attn, split heads, causal SDPA, merge
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (ops.transpose(t.reshape(B, T, nh, C // nh), 1, 2) for t in (q, k, v))
        if cache is None:  # training and full forwards: the cached causal mask
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = self._attend_cached(q, k, v, cache, p)
        y = ops.transpose(y, 1, 2).reshape(B, T, C)  # heads side by side again
        # END EXERCISE
        return self.resid_dropout(self.c_proj(y))

    def _attend_cached(self, q, k, v, cache: KVCache, p: float):
        """The new positions' q, k, v (B, nh, T, hs) -> y (B, nh, T, hs): their keys and values
        join the cache, and each new query attends over every cached position up to its own."""
        T = q.shape[2]
        # BEGIN EXERCISE ch07: kv_cache - cache.update(self.layer, k, v), then SDPA with a mask
        start = cache.pos
        k, v = cache.update(self.layer, k, v)  # (B, nh, start + T, hs)
        mask = None
        if T > 1:  # new query i sits at position start + i: it sees keys 0..start + i
            xp = q.xp
            mask = Tensor._wrap(xp.tril(xp.ones((T, start + T), dtype=bool), k=start))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        # END EXERCISE
        return y


class MLP(Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = GELU()
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(Module):
    """A pre-norm Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None):
        # BEGIN EXERCISE ch07: block_residuals - x + attn(ln_1(x)), then x + mlp(ln_2(x))
        x = x + self.attn(self.ln_1(x), cache)
        x = x + self.mlp(self.ln_2(x))
        # END EXERCISE
        return x


class GPT(Module):
    """forward(idx (B, T) int64, targets (B, T) or None) -> (logits (B, T, vocab), loss).

    loss is the mean cross-entropy of the next-token predictions (targets -1 are ignored), or
    None without targets. Unlike nanoGPT, logits cover every position even without targets (a
    KV cache, not a last-position shortcut, makes generation cheap).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.vocab_size <= 0 or config.block_size <= 0:
            raise ValueError(f"GPT: vocab_size and block_size must be positive, got {config}")
        self.config = config
        self.transformer = ModuleDict(
            dict(
                wte=Embedding(config.vocab_size, config.n_embd),
                wpe=Embedding(config.block_size, config.n_embd),
                drop=Dropout(config.dropout),
                h=ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017): reading a token in and writing it out share one
        # (vocab, C) matrix; it saves parameters and helps small models.
        # BEGIN EXERCISE ch07: gpt_forward - tie the weights: wte.weight is lm_head.weight
        self.transformer.wte.weight = self.lm_head.weight
        # END EXERCISE
        # GPT-2 initialization: N(0, 0.02) everywhere, zero biases, and residual projections
        # scaled by 1/sqrt(2 n_layer) so the residual stream's variance does not grow with depth.
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                init.normal_(p, 0.0, 0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, Linear):
            init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, Embedding):
            init.normal_(module.weight, 0.0, 0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters counted once (the tied matrix once); minus the position table by
        default, as nanoGPT reports."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise TypeError(
                f"GPT: idx must be a (B, T) integer tensor of token ids, got "
                f"{getattr(idx, 'shape', type(idx).__name__)}"
            )
        B, T = idx.shape
        start = 0 if cache is None else cache.pos
        if start + T > self.config.block_size:
            what = f"{T}" if cache is None else f"{start} cached + {T} new = {start + T}"
            raise ValueError(
                f"GPT: cannot forward a sequence of length {what}: block_size is "
                f"only {self.config.block_size}; crop the input to the last "
                f"{self.config.block_size} tokens"
            )
        if cache is not None and is_grad_enabled() and self.training:
            raise RuntimeError(
                "GPT: the KV cache is for inference; use model.eval() and tinytorch.no_grad()"
            )
        # BEGIN EXERCISE ch07: gpt_forward - wte(idx) + wpe(positions), drop, blocks, ln_f, lm_head
        pos = creation.arange(start, start + T, device=idx.device)  # (T,): start, ..., start+T-1
        tok_emb = self.transformer.wte(idx)  # (B, T, C)
        pos_emb = self.transformer.wpe(pos)  # (T, C), broadcast over the batch
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x, cache)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab)
        # END EXERCISE
        if cache is not None:  # every layer has stored this step's keys and values
            cache.pos += T
        loss = None
        if targets is not None:
            if tuple(targets.shape) != (B, T):
                raise ValueError(
                    f"GPT: targets have shape {tuple(targets.shape)}, expected (B, T) = {(B, T)}"
                )
            V = logits.shape[-1]
            loss = F.cross_entropy(
                logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=-1
            )
        return logits, loss

    def make_kv_cache(self, batch_size: int) -> KVCache:
        w = self.lm_head.weight
        return KVCache(self.config, batch_size, w.dtype, w.device)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context (e.g. a pretrained 1024 to 256): keep the first positions."""
        if block_size > self.config.block_size:
            raise ValueError(f"crop_block_size: {block_size} > block_size {self.config.block_size}")
        self.config.block_size = block_size
        wpe = self.transformer.wpe
        wpe.weight.data = wpe.weight.data[:block_size].copy()
        wpe.num_embeddings = block_size

    def optimizer_groups(self, weight_decay: float):
        """nanoGPT's split: decay every matrix (dim >= 2: Linear weights, embeddings), not the
        biases and LayerNorm gains (dim < 2)."""
        params = list(self.parameters())
        return [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas, device_type: str = "cpu"
    ):
        from ..optim import AdamW

        return AdamW(self.optimizer_groups(weight_decay), lr=learning_rate, betas=betas)

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k=None, **kwargs):
        """nanoGPT's signature; see tinytorch.generate.generate for every option."""
        from ..generate import generate

        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_name, **overrides) -> GPT:
        """GPT-2's published weights from a Hugging Face folder (config.json +
        model.safetensors) or a name ("gpt2": downloaded once into the cache, checked), with
        the Conv1D weights transposed as nanoGPT does; eval mode. overrides: GPTConfig fields
        (e.g. dropout=0.1). See tinytorch.models.pretrained (chapter 09)."""
        from .pretrained import gpt_from_pretrained

        return gpt_from_pretrained(cls, path_or_name, **overrides)

    def save_pretrained(self, folder) -> None:
        """This GPT as a Hugging Face GPT-2 folder (config.json + model.safetensors)."""
        from .pretrained import gpt_save_pretrained

        gpt_save_pretrained(self, folder)

    @classmethod
    def from_nanogpt(cls, checkpoint) -> GPT:
        """A GPT from a nanoGPT checkpoint dict (`torch.load("ckpt.pt")`: "model_args" and
        "model"); drops torch.compile's "_orig_mod." prefix and the old mask buffers."""
        args = {k: v for k, v in checkpoint["model_args"].items() if k in GPTConfig().__dict__}
        model = cls(GPTConfig(**args))
        state = {}
        for k, v in checkpoint["model"].items():
            k = k.removeprefix("_orig_mod.")
            if not k.endswith((".attn.bias", ".attn.masked_bias")):
                state[k] = v
        model.load_state_dict(state)
        return model

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())
