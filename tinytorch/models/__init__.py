"""Complete models built from tinytorch.nn (GPT: chapter 07)."""

from .gpt import GPT, GPTConfig  # noqa: F401
