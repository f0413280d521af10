"""GPT for classification, as in GPT-1 (Radford et al. 2018, section 3.2) (chapter 09).

The pretrained decoder reads the whole text; because attention is causal, only the last
position has seen every token, so its final hidden state (after ln_f) summarizes the text and a
linear head on it gives the class logits. The body is chapter 07's GPT (`transformer`: wte,
wpe, h, ln_f, the same names and so the same weights); the head is `score` (n_embd ->
num_labels, no bias), as in transformers' GPT2ForSequenceClassification, whose checkpoints
load one to one (`from_pretrained`).

Padding goes on the right: the pads come after the text, so under the causal mask no real
position ever attends to one, and the state at the last real position is exactly that of the
unpadded text. That position is found from `attention_mask` (1 = token, 0 = pad) when given,
otherwise as the last id that is not `pad_token_id`.
"""

from __future__ import annotations

import numpy as np

from .. import backend, creation
from ..nn import functional as F
from ..nn import init
from ..nn.layers import Linear
from ..nn.module import Module
from ..tensor import Tensor
from .gpt import GPT, GPTConfig

__all__ = ["GPTForSequenceClassification", "last_token_index"]


def last_token_index(idx, attention_mask=None, pad_token_id=None) -> np.ndarray:
    """(B,) NumPy index of each row's last real token: from attention_mask (B, T) (1 = token,
    0 = pad; it must be right-padded) or, without one, the last id != pad_token_id. A row
    without any real token gets 0, as in transformers."""
    if attention_mask is not None:
        real = backend.to_device(_raw(attention_mask), "cpu").astype(bool)
        n = real.sum(1)
        if not (real == (np.arange(real.shape[1]) < n[:, None])).all():
            raise ValueError(
                "GPTForSequenceClassification: attention_mask must be right-padded (ones, then "
                "zeros): with left padding the last position is not the last token"
            )
        return np.maximum(n - 1, 0)
    real = backend.to_device(_raw(idx), "cpu") != pad_token_id
    return (real * np.arange(real.shape[1])).argmax(1)  # the last True of each row


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


class GPTForSequenceClassification(Module):
    """forward(idx (B, T) int, attention_mask=None, labels=None) -> logits (B, num_labels),
    or (logits, loss) with labels (B,) (cross-entropy)."""

    def __init__(self, config: GPTConfig, num_labels: int = 2, pad_token_id: int = 0):
        super().__init__()
        if num_labels < 1:
            raise ValueError(
                f"GPTForSequenceClassification: num_labels must be >= 1, got {num_labels}"
            )
        self.config, self.num_labels, self.pad_token_id = config, num_labels, pad_token_id
        self.transformer = GPT(config).transformer  # chapter 07's body and its initialization
        self.score = Linear(config.n_embd, num_labels, bias=False)
        init.normal_(self.score.weight, 0.0, 0.02)

    def hidden_states(self, idx: Tensor) -> Tensor:
        """(B, T) ids -> (B, T, n_embd): GPT's forward up to ln_f, without the LM head."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(
                f"GPTForSequenceClassification: {T} positions but block_size is "
                f"{self.config.block_size}; truncate the input"
            )
        tr = self.transformer
        x = tr.drop(tr.wte(idx) + tr.wpe(creation.arange(T, device=idx.device)))
        for block in tr.h:
            x = block(x)
        return tr.ln_f(x)

    def forward(self, idx, attention_mask=None, labels=None):
        if not isinstance(idx, Tensor) or idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise TypeError(
                f"GPTForSequenceClassification: idx must be a (B, T) integer Tensor of token "
                f"ids, got {getattr(idx, 'shape', type(idx).__name__)}"
            )
        h = self.hidden_states(idx)  # (B, T, C)
        last = last_token_index(idx, attention_mask, self.pad_token_id)
        logits = self.score(h[np.arange(idx.shape[0]), last])  # (B, C) -> (B, num_labels)
        if labels is None:
            return logits
        if not isinstance(labels, Tensor):
            labels = creation.tensor(labels, device=logits.device)
        return logits, F.cross_entropy(logits, labels.reshape(-1))

    @classmethod
    def from_pretrained(cls, path_or_name, num_labels: int = 2, pad_token_id=None, **overrides):
        """GPT-2's body from a Hugging Face folder or name ("gpt2") and a new `score` head
        (or the checkpoint's, for a GPT2ForSequenceClassification folder); pad_token_id
        defaults to the config's, else GPT-2's <|endoftext|> (50256). Eval mode."""
        from .pretrained import gpt_from_pretrained

        if pad_token_id is not None:
            overrides["pad_token_id"] = pad_token_id
        return gpt_from_pretrained(
            cls, path_or_name, new=("score.",), num_labels=num_labels, **overrides
        )

    def save_pretrained(self, folder) -> None:
        """A Hugging Face GPT2ForSequenceClassification folder (config.json + safetensors)."""
        from .pretrained import gpt_save_pretrained

        gpt_save_pretrained(self, folder)
