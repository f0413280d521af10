"""BERT: a bidirectional Transformer encoder with Hugging Face's names (chapter 09).

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers". The input is the
sum of three embeddings (token, position, segment), then `num_hidden_layers` post-norm
encoder layers (x = LayerNorm(x + attention(x)); x = LayerNorm(x + FFN(x)), FFN with GELU),
then a pooler (the first token's state -> dense -> tanh) that classifiers read.

The module names are those of `transformers.BertModel` (embeddings.word_embeddings,
encoder.layer.0.attention.self.query, ..., pooler.dense), so its state_dict keys are too and a
Hugging Face checkpoint loads one to one (`BertModel.from_pretrained`, see
tinytorch.models.pretrained). The heads, `BertForMaskedLM` (the output matrix is the word
embedding's) and `BertForSequenceClassification` (dropout + linear on the pooled output), are
in tinytorch/models/bert_heads.py.

Padding: `attention_mask` (B, T) with 1 for real tokens and 0 for padding becomes a boolean
(B, 1, 1, T) mask, True = may attend (F.scaled_dot_product_attention's convention, chapter 06):
exactly the key padding mask that chapter 11's fused kernel takes, so float32 models with head
sizes 32, 64 or 128 run the fused attention with padding. Shapes: B batch, T positions,
H = hidden_size, nh heads, hs = H / nh, V vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from .. import backend, creation, ops
from ..nn import functional as F
from ..nn import init
from ..nn.containers import ModuleList
from ..nn.layers import Dropout, Embedding, LayerNorm, Linear
from ..nn.module import Module
from ..tensor import Tensor
from .pretrained import PretrainedMixin

__all__ = [
    "BertConfig",
    "BertModel",
    "padding_attention_mask",
]

# Hugging Face's names for the activations a BERT config.json may hold
_ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact (erf), BERT's
    "gelu_new": lambda x: F.gelu(x, "tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, "tanh"),
    "relu": lambda x: F.relu(x),
}


@dataclass
class BertConfig:
    """BERT's hyperparameters, named as in Hugging Face's config.json (defaults: BERT-base)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    classifier_dropout: float | None = None  # None: hidden_dropout_prob, as in transformers

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig: hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"BertConfig: hidden_act {self.hidden_act!r} is not supported; expected one "
                f"of {sorted(_ACTIVATIONS)}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        """From a config.json dict; keys this config does not have (architectures,
        model_type, id2label, ...) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


def padding_attention_mask(attention_mask, device: str = "cpu") -> Tensor | None:
    """(B, T) of 1 (real token) / 0 (padding), a Tensor or array -> (B, 1, 1, T) bool Tensor
    on `device`,
    True = this key may be attended to (SDPA's convention), broadcasting over heads and
    queries; None when there is no padding at all (the attention then needs no mask)."""
    if attention_mask is None:
        return None
    m = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
    if m.ndim != 2:
        raise ValueError(
            f"BERT: attention_mask must be (B, T) with 1 for tokens and 0 for padding, got "
            f"shape {tuple(m.shape)}"
        )
    keep = backend.to_device(m, device).astype(bool)
    if bool(keep.all()):
        return None
    B, T = keep.shape
    return Tensor._wrap(keep.reshape(B, 1, 1, T))


class BertEmbeddings(Module):
    """word (token) + position + token_type (segment) embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        H = config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, H, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, H)
        self.token_type_embeddings = Embedding(config.type_vocab_size, H)
        self.LayerNorm = LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """input_ids (B, T) int, token_type_ids (B, T) int (0 = sentence A, 1 = B; default
        all 0) -> (B, T, H)."""
        B, T = input_ids.shape
        if T > self.max_positions:
            raise ValueError(
                f"BERT: the input has {T} positions but max_position_embeddings is "
                f"{self.max_positions}; truncate it"
            )
        if token_type_ids is None:
            token_type_ids = creation.zeros(B, T, dtype=np.int64, device=input_ids.device)
        # BEGIN EXERCISE ch09: segment_embeddings - word + position + token_type, LayerNorm, dropout
        positions = creation.arange(T, device=input_ids.device)  # (T,), broadcast over B
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        x = self.dropout(self.LayerNorm(x))
        # END EXERCISE
        return x


class BertSelfAttention(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        H = config.hidden_size
        self.query, self.key, self.value = Linear(H, H), Linear(H, H), Linear(H, H)
        self.num_heads = config.num_attention_heads
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, T, H), mask (B, 1, 1, T) bool or None -> (B, T, H): every position attends
        to every real position (no causal mask: BERT reads both directions)."""
        B, T, H = x.shape
        nh = self.num_heads
        q, k, v = (
            ops.transpose(lin(x).reshape(B, T, nh, H // nh), 1, 2)  # (B, nh, T, hs)
            for lin in (self.query, self.key, self.value)
        )
        p = self.dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return ops.transpose(y, 1, 2).reshape(B, T, H)


class BertSelfOutput(Module):
    """dense, dropout, then the post-norm residual: LayerNorm(x + dense(y))."""

    def __init__(self, config: BertConfig, d_in: int):
        super().__init__()
        self.dense = Linear(d_in, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(y)) + x)


class BertAttention(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config, config.hidden_size)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(Module):
    """One post-norm encoder layer: attention sub-layer, then the feed-forward sub-layer."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, config.intermediate_size)  # HF's BertOutput

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, mask):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden (B, T, H) -> (B, H): the first token's ([CLS]) state through dense + tanh."""
        # BEGIN EXERCISE ch09: pooler_head - the first position's state (B, H) -> dense -> tanh
        pooled = ops.tanh(self.dense(hidden[:, 0]))
        # END EXERCISE
        return pooled


def _init_bert_weights(module, std: float):
    """BERT's initialization (as transformers): N(0, std) matrices and tables, zero biases
    and padding row, LayerNorm at identity."""
    if isinstance(module, Linear):
        init.normal_(module.weight, 0.0, std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, Embedding):
        init.normal_(module.weight, 0.0, std)
        if module.padding_idx is not None:
            module.weight.data[module.padding_idx] = 0
    elif isinstance(module, LayerNorm):
        module.reset_parameters()


def _check_ids(input_ids, what: str):
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or input_ids.dtype.kind not in "iu":
        raise TypeError(
            f"{what}: input_ids must be a (B, T) integer Tensor of token ids, got "
            f"{getattr(input_ids, 'shape', type(input_ids).__name__)}"
        )


class BertModel(PretrainedMixin, Module):
    """The encoder: forward(input_ids, attention_mask=None, token_type_ids=None) ->
    (sequence_output (B, T, H), pooled_output (B, H) or None without the pooler)."""

    config_class = BertConfig

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(lambda m: _init_bert_weights(m, config.initializer_range))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        _check_ids(input_ids, type(self).__name__)
        mask = padding_attention_mask(attention_mask, input_ids.device)
        x = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        return x, (self.pooler(x) if self.pooler is not None else None)
