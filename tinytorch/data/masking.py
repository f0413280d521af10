"""BERT's masked-language-model corruption (Devlin et al. 2019, section 3.1) (chapter 09).

    inputs, labels = mask_tokens(input_ids, mask_token_id=4, vocab_size=V, special_ids=(1, 2),
                                 pad_id=0, rng=np.random.default_rng(0))

Each position that is not padding and not a special token ([CLS], [SEP], ...) is chosen with
probability mlm_probability (15%). The model must predict the original token at the chosen
positions and nowhere else: labels holds that token there and -100 (cross_entropy's
ignore_index) everywhere else. Of the chosen positions, 80% are replaced by [MASK], 10% by a
random token and 10% are left as they are: since [MASK] never appears when the model is
fine-tuned, the model cannot rely on seeing it, and must keep a good representation of every
input token. Random tokens are drawn from the ordinary vocabulary only (never a special id
such as [MASK] or [PAD]).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mask_tokens"]


def mask_tokens(
    input_ids,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids=(),
    pad_id=None,
    mlm_probability: float = 0.15,
    rng: np.random.Generator,
):
    """input_ids: integer array of any shape (e.g. (B, T)) -> (inputs, labels), both int64 of
    that shape, input_ids left unchanged. See the module docstring for the procedure."""
    ids = np.asarray(input_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mask_tokens: input_ids must be an integer array, got {ids.dtype}")
    if not 0.0 <= mlm_probability <= 1.0:
        raise ValueError(f"mask_tokens: mlm_probability must be in [0, 1], got {mlm_probability}")
    special = {int(s) for s in special_ids} | {int(mask_token_id)}
    if pad_id is not None:
        special.add(int(pad_id))
    ordinary = np.setdiff1d(np.arange(vocab_size), np.fromiter(special, dtype=np.int64))
    if ordinary.size == 0:
        raise ValueError("mask_tokens: every id of the vocabulary is special; nothing to draw")
    ids = ids.astype(np.int64)
    inputs, labels = ids.copy(), np.full_like(ids, -100)
    # BEGIN EXERCISE ch09: mask_tokens - choose, label; 80% [MASK], 10% random ordinary, 10% kept
    maskable = ~np.isin(ids, list(special))  # never padding, [CLS], [SEP], [MASK]...
    chosen = maskable & (rng.random(ids.shape) < mlm_probability)
    labels[chosen] = ids[chosen]
    u = rng.random(ids.shape)  # one draw per position decides what a chosen one becomes
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)  # the remaining 10% keep their token
    inputs[to_mask] = mask_token_id
    inputs[to_random] = rng.choice(ordinary, size=int(to_random.sum()))
    # END EXERCISE
    return inputs, labels
