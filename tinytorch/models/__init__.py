"""Complete models built from tinytorch.nn (CharRNN: chapters 04-05; GPT: chapter 07; BERT,
the GPT classifier and pretrained weights: chapter 09)."""

from .bert import (  # noqa: F401
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
)
from .char_rnn import CharRNN  # noqa: F401
from .gpt import GPT, GPTConfig  # noqa: F401
from .gpt_classifier import GPTForSequenceClassification  # noqa: F401
