"""BERT's heads (chapter 09): masked-LM pretraining and sequence classification, on
tinytorch/models/bert.py's encoder, with Hugging Face's names (cls.predictions.*, classifier).

`BertForMaskedLM`: transform (dense, GELU, LayerNorm), then the output layer H -> V whose
matrix is the word embedding's (tied) with its own bias; the loss is the cross-entropy over the
positions whose label is not -100. `BertForSequenceClassification`: dropout + a linear
classifier on the pooled output (the first token's state -> dense -> tanh). Shapes: B batch,
T positions, H = hidden_size, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from .. import backend, creation
from ..nn import functional as F
from ..nn import init
from ..nn.layers import Dropout, LayerNorm, Linear
from ..nn.module import Module, Parameter
from ..tensor import Tensor
from .bert import _ACTIVATIONS, BertConfig, BertModel, _init_bert_weights
from .pretrained import PretrainedMixin

__all__ = ["BertForMaskedLM", "BertForSequenceClassification"]


def _as_labels(labels, device: str) -> Tensor:
    return labels if isinstance(labels, Tensor) else creation.tensor(labels, device=device)


class BertPredictionHeadTransform(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.act = _ACTIVATIONS[config.hidden_act]
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(Module):
    """transform (dense, GELU, LayerNorm), then decoder: H -> V with the word embedding
    matrix (tied by the model) and its own bias `bias` (decoder.bias is the same Parameter)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = Linear(config.hidden_size, config.vocab_size)
        self.bias = Parameter(creation.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, x):
        return self.decoder(self.transform(x))


class BertOnlyMLMHead(Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, x):
        return self.predictions(x)


class BertForMaskedLM(PretrainedMixin, Module):
    """BERT with the masked-LM head: forward(input_ids, attention_mask=None,
    token_type_ids=None, labels=None) -> logits (B, T, V), or (logits, loss) with labels
    (B, T): the cross-entropy over positions whose label is not -100 (the masked ones)."""

    config_class = BertConfig
    tied_keys = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.apply(lambda m: _init_bert_weights(m, config.initializer_range))
        init.zeros_(self.cls.predictions.bias)
        # tied: reading a token in and predicting it out share one (V, H) matrix
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        x, _ = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.cls(x)  # (B, T, V)
        if labels is None:
            return logits
        B, T, V = logits.shape
        rows, targets = _labelled(labels, logits.device)
        # the same mean as cross_entropy(..., ignore_index=-100) over all B*T rows, without
        # the log-softmax of the ~85% rows that are ignored
        loss = F.cross_entropy(logits.reshape(B * T, V)[rows], targets)
        return logits, loss

    def masked_lm_loss(self, input_ids, labels, attention_mask=None, token_type_ids=None):
        """The loss of forward(..., labels=labels) alone, faster for training: the prediction
        head and the output layer (H x V per position) run only at the labelled positions."""
        x, _ = self.bert(input_ids, attention_mask, token_type_ids)
        B, T, H = x.shape
        rows, targets = _labelled(labels, x.device)
        return F.cross_entropy(self.cls(x.reshape(B * T, H)[rows]), targets)


def _labelled(labels, device: str):
    """(rows, targets): the flat indices (NumPy) of the positions whose label is not -100,
    and those labels as an int64 Tensor on `device`."""
    lab = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    lab = backend.to_device(lab, "cpu").reshape(-1).astype(np.int64)
    rows = np.flatnonzero(lab != -100)
    return rows, creation.tensor(lab[rows], device=device)


class BertForSequenceClassification(PretrainedMixin, Module):
    """BERT + dropout + a linear classifier on the pooled output: forward(input_ids,
    attention_mask=None, token_type_ids=None, labels=None) -> logits (B, num_labels), or
    (logits, loss) with labels (B,): cross-entropy (mean squared error when num_labels == 1,
    as transformers' regression)."""

    config_class = BertConfig

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        if num_labels < 1:
            raise ValueError(
                f"BertForSequenceClassification: num_labels must be >= 1, got {num_labels}"
            )
        self.config, self.num_labels = config, num_labels
        self.bert = BertModel(config)
        p = config.classifier_dropout
        self.dropout = Dropout(config.hidden_dropout_prob if p is None else p)
        self.classifier = Linear(config.hidden_size, num_labels)
        _init_bert_weights(self.classifier, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        # BEGIN EXERCISE ch09: pooler_head - dropout on pooled (B, H), classifier -> (B, num_labels)
        logits = self.classifier(self.dropout(pooled))
        # END EXERCISE
        if labels is None:
            return logits
        labels = _as_labels(labels, logits.device)
        if self.num_labels == 1:
            loss = F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
        else:
            loss = F.cross_entropy(logits, labels.reshape(-1))
        return logits, loss
