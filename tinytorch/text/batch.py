"""Batch encoding for models: truncation, padding and attention masks (chapter 02).

Sequences of different lengths become one rectangular (B, T) int64 array of ids plus a
(B, T) mask that is 1 on real tokens and 0 on padding, ready for a DataLoader.
"""

from __future__ import annotations

import numpy as np


def pad_batch(
    sequences,
    max_length=None,
    truncation: bool = False,
    padding="longest",
    padding_side: str = "right",
    truncation_side: str = "right",
    pad_id: int = 0,
):
    """Turn lists of ids into {"input_ids": (B, T), "attention_mask": (B, T)} int64 arrays.

    padding: "longest" (T = the longest sequence, capped by max_length when truncating) or
    "max_length" (T = max_length). truncation: cut sequences longer than max_length from
    `truncation_side`; without it such a sequence is an error naming it.
    """
    for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
        if side not in ("left", "right"):
            raise ValueError(f"{name} must be 'left' or 'right', got {side!r}")
    if padding not in ("longest", "max_length"):
        raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
    if (padding == "max_length" or truncation) and max_length is None:
        raise ValueError(f"padding={padding!r}, truncation={truncation} need max_length")
    seqs = [list(map(int, s)) for s in sequences]
    if max_length is not None:
        for i, s in enumerate(seqs):
            if len(s) > max_length:
                if not truncation:
                    raise ValueError(
                        f"sequence {i} has {len(s)} tokens, more than max_length="
                        f"{max_length}; pass truncation=True to cut it"
                    )
                seqs[i] = s[:max_length] if truncation_side == "right" else s[-max_length:]
    longest = max((len(s) for s in seqs), default=0)
    T = max_length if padding == "max_length" else longest
    # BEGIN EXERCISE ch02: pad_batch - place each sequence and its mask on the padding side
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), T), dtype=np.int64)
    for i, s in enumerate(seqs):
        n = len(s)
        if n == 0:
            continue
        sl = slice(0, n) if padding_side == "right" else slice(T - n, T)
        ids[i, sl] = s
        mask[i, sl] = 1
    # END EXERCISE
    return {"input_ids": ids, "attention_mask": mask}


def encode_batch(tokenizer, texts, **kwargs):
    """`pad_batch` of `tokenizer.encode(t)` for each text (same keyword arguments)."""
    return pad_batch([tokenizer.encode(t) for t in texts], **kwargs)
