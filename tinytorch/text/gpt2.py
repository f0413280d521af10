"""OpenAI's GPT-2 tokenizer from its two files, encoder.json and vocab.bpe (chapter 02).

GPT-2 stores its byte-level vocabulary as printable strings: each byte is shown as one
Unicode character (`bytes_to_unicode`), so "Ġthe" is the bytes b" the". vocab.bpe lists the
50,000 merges in the order they were learned (their rank); encoder.json gives every token's
id. We turn both into the byte-level form of `BPETokenizer`, so encoding is the same
merge-by-rank loop, and the ids equal tiktoken's "gpt2" encoding token for token.
"""

from __future__ import annotations

import json
from pathlib import Path

from .bpe import GPT2_PATTERN, BPETokenizer

ENDOFTEXT = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters: printable
    Latin-1 bytes map to themselves, the rest to code points 256 and up, in order."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class GPT2Tokenizer(BPETokenizer):
    """GPT-2's tokenizer (50,257 ids; `<|endoftext|>` = 50256).

    tok = GPT2Tokenizer.from_files("gpt2/encoder.json", "gpt2/vocab.bpe")
    tok.encode("Hello world")  # [15496, 995]
    """

    @classmethod
    def from_files(cls, encoder_json, vocab_bpe) -> GPT2Tokenizer:
        byte_decoder = {c: b for b, c in bytes_to_unicode().items()}

        def to_bytes(token: str, where: str) -> bytes:
            try:
                return bytes(byte_decoder[c] for c in token)
            except KeyError as e:
                raise ValueError(
                    f"{where}: token {token!r} has a character outside GPT-2's byte alphabet ({e})"
                ) from None

        try:
            encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read GPT-2 encoder file {encoder_json}: {e}") from None
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        if not lines or not lines[0].startswith("#version"):
            raise ValueError(
                f"{vocab_bpe} does not start with '#version': not a GPT-2 vocab.bpe file"
            )
        special = {t: i for t, i in encoder.items() if t == ENDOFTEXT}
        vocab = {i: to_bytes(t, str(encoder_json)) for t, i in encoder.items() if t not in special}
        ids = {b: i for i, b in vocab.items()}
        base = [ids[bytes([b])] for b in range(256)]
        merges, merge_ids = [], []
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{vocab_bpe}:{n}: expected two tokens, got {line!r}")
            a, b = (to_bytes(p, f"{vocab_bpe}:{n}") for p in parts)
            if a + b not in ids:
                raise ValueError(
                    f"{vocab_bpe}:{n}: merge result {a + b!r} is not in {encoder_json}"
                )
            merges.append((ids[a], ids[b]))
            merge_ids.append(ids[a + b])
        return cls(merges, special, GPT2_PATTERN, base=base, vocab=vocab, merge_ids=merge_ids)

    @classmethod
    def from_data_dir(cls) -> GPT2Tokenizer:
        """Load the files through tinytorch.data (TINYTORCH_DATA_DIR, cache or download)."""
        from ..data import dataset_path

        return cls.from_files(dataset_path("gpt2-encoder"), dataset_path("gpt2-vocab"))

    @property
    def eot_token(self) -> int:
        return self.special_tokens[ENDOFTEXT]

    def save(self, path) -> None:
        raise NotImplementedError("GPT2Tokenizer is defined by its two OpenAI files; keep those")
