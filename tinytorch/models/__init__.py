"""Complete models built from tinytorch.nn (CharRNN: chapters 04-05; GPT: chapter 07)."""

from .char_rnn import CharRNN  # noqa: F401
from .gpt import GPT, GPTConfig  # noqa: F401
