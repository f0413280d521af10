"""The baseline without pretraining or attention: chapter 05's LSTM, both directions.

    model = BiLSTMClassifier(vocab_size, embed=128, hidden=128)
    logits = model(input_ids, attention_mask)        # (B, T) ids -> (B, 2)

Embedding -> bidirectional LSTM -> max over the real (unpadded) positions of the 2H
features -> dropout -> Linear. Batches are right-padded; the model sees the padding but the
pooling never picks a padded position. Length-bucketed batches (data.bucket_batches) keep
the padding short, so the backward direction starts on real tokens or very close to them
(PyTorch's pack_padded_sequence would skip the padding altogether).
"""

from __future__ import annotations

import tinytorch as tt
from tinytorch import nn


class BiLSTMClassifier(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embed: int = 128,
        hidden: int = 128,
        num_labels: int = 2,
        dropout: float = 0.3,
        pad_id: int = 0,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, num_labels)

    def forward(self, input_ids, attention_mask=None):
        """input_ids (B, T) int64, attention_mask (B, T) 1 on tokens -> logits (B, num_labels)."""
        x = input_ids if isinstance(input_ids, tt.Tensor) else tt.tensor(input_ids)
        out, _ = self.lstm(self.dropout(self.embedding(x)))  # (B, T, 2H)
        if attention_mask is not None:
            m = attention_mask.data if isinstance(attention_mask, tt.Tensor) else attention_mask
            pad = tt.tensor(m.reshape(*x.shape, 1) == 0)
            out = out.masked_fill(pad, -1e4)  # a padded position never wins the max
        return self.classifier(self.dropout(out.max(dim=1).values))
