"""tinytorch.text: tokenizers (chapter 02).

CharTokenizer   one id per character
BPETokenizer    byte-level BPE: fast incremental training, merge-by-rank encoding, special
                tokens like tiktoken, saved to one checked file
GPT2Tokenizer   OpenAI's GPT-2 vocabulary; the same ids as tiktoken's "gpt2"
pad_batch, encode_batch   truncation, padding and attention masks for models
"""

from .batch import encode_batch, pad_batch
from .bpe import BPETokenizer
from .bpe_train import (
    GPT2_PATTERN,
    chunk_counts,
    merge_pair,
    train_merges,
    train_merges_reference,
)
from .char import CharTokenizer
from .gpt2 import ENDOFTEXT, GPT2Tokenizer, bytes_to_unicode, tiktoken_encoding

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "ENDOFTEXT",
    "GPT2Tokenizer",
    "GPT2_PATTERN",
    "bytes_to_unicode",
    "chunk_counts",
    "encode_batch",
    "merge_pair",
    "pad_batch",
    "tiktoken_encoding",
    "train_merges",
    "train_merges_reference",
]
