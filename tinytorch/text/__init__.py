"""tinytorch.text: tokenizers (chapter 02).

CharTokenizer   one id per character
BPETokenizer    byte-level BPE: fast incremental training, merge-by-rank encoding, special
                tokens like tiktoken, saved to one checked file
GPT2Tokenizer   OpenAI's GPT-2 vocabulary; the same ids as tiktoken's "gpt2"
pad_batch, encode_batch   truncation, padding and attention masks for models
"""

from .batch import encode_batch, pad_batch  # noqa: F401
from .bpe import (  # noqa: F401
    GPT2_PATTERN,
    BPETokenizer,
    chunk_counts,
    train_merges,
    train_merges_reference,
)
from .char import CharTokenizer  # noqa: F401
from .gpt2 import GPT2Tokenizer, bytes_to_unicode  # noqa: F401
