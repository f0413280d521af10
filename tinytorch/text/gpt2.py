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

        for path in (encoder_json, vocab_bpe):
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"GPT-2 tokenizer file {path} does not exist (GPT2Tokenizer.from_data_dir() "
                    "finds encoder.json and vocab.bpe through tinytorch.data.dataset_path)"
                )
        try:
            encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{encoder_json} is not a valid GPT-2 encoder.json: {e}") from None
        if not isinstance(encoder, dict) or not all(type(i) is int for i in encoder.values()):
            raise ValueError(f"{encoder_json}: expected a JSON object mapping tokens to ids")
        lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        if not lines[0].startswith("#version"):
            raise ValueError(
                f"{vocab_bpe} does not start with '#version': not a GPT-2 vocab.bpe file"
            )
        special = {t: i for t, i in encoder.items() if t == ENDOFTEXT}
        vocab = {i: to_bytes(t, str(encoder_json)) for t, i in encoder.items() if t not in special}
        ids = {b: i for i, b in vocab.items()}
        missing = [b for b in range(256) if bytes([b]) not in ids]
        if missing or len(ids) != len(vocab):
            raise ValueError(
                f"{encoder_json}: expected one id per distinct token including all 256 single "
                f"bytes (missing bytes: {missing[:5]})"
            )
        base = [ids[bytes([b])] for b in range(256)]
        merges, merge_ids = [], []
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{vocab_bpe}:{n}: expected two tokens, got {line!r}")
            a, b = (to_bytes(p, f"{vocab_bpe}:{n}") for p in parts)
            absent = [t for t in (a, b, a + b) if t not in ids]
            if absent:
                raise ValueError(f"{vocab_bpe}:{n}: token {absent[0]!r} is not in {encoder_json}")
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
        raise NotImplementedError(
            "GPT2Tokenizer is defined by OpenAI's encoder.json and vocab.bpe; keep those files "
            "and load them with GPT2Tokenizer.from_files"
        )


def tiktoken_encoding(encoder_json, vocab_bpe):
    """tiktoken's "gpt2" Encoding built offline from the same two files: the reference our
    GPT2Tokenizer is tested and benchmarked against. `tiktoken.get_encoding("gpt2")` would
    download the files; this builds the same Encoding (tiktoken's own pattern, file conversion,
    vocabulary size and special token) from local copies. Needs `pip install tiktoken`."""
    import hashlib

    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str  # tiktoken's spelling of the pattern

    def sha256(path):
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    # Passing the files' own hashes makes tiktoken ignore a stale copy in its cache folder.
    ranks = data_gym_to_mergeable_bpe_ranks(
        str(vocab_bpe), str(encoder_json), sha256(vocab_bpe), sha256(encoder_json)
    )
    return tiktoken.Encoding(
        "gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: 50256},
        explicit_n_vocab=50257,
    )
