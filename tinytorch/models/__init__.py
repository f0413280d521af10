"""Complete models built from tinytorch.nn (CharRNN: chapters 04-05; GPT: chapter 07; BERT,
the GPT classifier and pretrained weights: chapter 09; encoder-decoders for translation and
their decoding: chapter 10)."""

from .bert import BertConfig, BertModel  # noqa: F401
from .bert_heads import BertForMaskedLM, BertForSequenceClassification  # noqa: F401
from .char_rnn import CharRNN  # noqa: F401
from .gpt import GPT, GPTConfig  # noqa: F401
from .gpt_classifier import GPTForSequenceClassification  # noqa: F401
from .seq2seq import (  # noqa: F401
    Seq2SeqRNN,
    Seq2SeqTransformer,
    beam_search,
    greedy_decode,
)
