"""Mean pooling: the classifier reads the average of the last hidden states over the real
tokens instead of the [CLS] pooler.

Pretraining here is masked-LM only (no next-sentence task), so nothing in it teaches the
[CLS] position to summarize the sentence: its state is one more token's. The average of all
token states uses what masked-LM did teach, the representation of every word in context
(Sentence-BERT's choice [Reimers & Gurevych, 2019]).
"""

from __future__ import annotations

from tinytorch import creation
from tinytorch.models import BertForSequenceClassification
from tinytorch.nn import functional as F
from tinytorch.tensor import Tensor


class BertMeanPoolClassifier(BertForSequenceClassification):
    """BertForSequenceClassification (same parameters, same folders) whose head reads the
    masked mean of the sequence output: (B, T, H) -> (B, H) -> dropout -> classifier."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        x, _ = self.bert(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        B, T, _ = x.shape
        if attention_mask is None:
            pooled = x.mean(dim=1)
        else:
            m = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
            w = creation.tensor(m.reshape(B, T, 1).astype(x.dtype), device=x.device)
            pooled = (x * w).sum(dim=1) / w.sum(dim=1)
        logits = self.classifier(self.dropout(pooled))
        if labels is None:
            return logits
        return logits, F.cross_entropy(logits, creation.tensor(labels, device=x.device))
