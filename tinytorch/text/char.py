"""The character-level tokenizer: one id per distinct character of a text (chapter 02)."""

from __future__ import annotations

from .files import read_checked_json, write_checked_json

FORMAT = "tinytorch-char"


class CharTokenizer:
    """ids are the positions of the characters in the sorted set of a text's characters.

        tok = CharTokenizer.from_text(open("input.txt").read())
        tok.encode("hi") -> [46, 47];  tok.decode([46, 47]) -> "hi"

    An unknown character is an error naming it and its position, unless the tokenizer was
    built with `unk_token` (e.g. "<unk>"), which then gets the last id and stands in for it.
    """

    def __init__(self, chars, unk_token=None):
        chars = list(chars)
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: characters must be distinct")
        self.chars = chars
        self.unk_token = unk_token
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.unk_id = len(chars) if unk_token is not None else None

    @classmethod
    def from_text(cls, text: str, unk_token=None) -> CharTokenizer:
        return cls(sorted(set(text)), unk_token)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + (self.unk_token is not None)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        # BEGIN EXERCISE ch02: char_tokenizer - stoi[c] per character; unknown: unk_id or ValueError
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            pass
        out = []
        for pos, c in enumerate(text):
            i = stoi.get(c, self.unk_id)
            if i is None:
                raise ValueError(
                    f"character {c!r} (U+{ord(c):04X}) at position {pos} is not in the "
                    f"vocabulary of {len(self.chars)} characters; build the tokenizer from a "
                    "text that contains it, or pass unk_token='<unk>'"
                )
            out.append(i)
        return out
        # END EXERCISE

    def decode(self, ids) -> str:
        # BEGIN EXERCISE ch02: char_tokenizer - chars[i] per id (unk_id: unk_token), else IndexError
        out = []
        for pos, i in enumerate(ids):
            i = int(i)
            if 0 <= i < len(self.chars):
                out.append(self.chars[i])
            elif i == self.unk_id:
                out.append(self.unk_token)
            else:
                raise IndexError(
                    f"token id {i} at position {pos} is out of range: this "
                    f"tokenizer has ids 0..{self.vocab_size - 1}"
                )
        return "".join(out)
        # END EXERCISE

    def save(self, path) -> None:
        """Write one JSON file atomically, with a checksum of its content."""
        payload = {"format": FORMAT, "version": 1, "chars": self.chars, "unk_token": self.unk_token}
        write_checked_json(path, payload)

    @classmethod
    def load(cls, path) -> CharTokenizer:
        payload = read_checked_json(path, FORMAT)
        chars = payload.get("chars")
        if not isinstance(chars, list) or not all(
            isinstance(c, str) and len(c) == 1 for c in chars
        ):
            raise ValueError(f"{path}: 'chars' must be a list of single characters")
        unk = payload.get("unk_token")
        if unk is not None and not isinstance(unk, str):
            raise ValueError(f"{path}: 'unk_token' must be a string or null, got {unk!r}")
        try:
            return cls(chars, unk)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
