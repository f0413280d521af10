"""Encoder-decoder models for translation (chapter 10), in one place to import from.

    Seq2SeqTransformer   nn.Transformer with embeddings, sinusoidal positions, masks, a KV cache
                         (seq2seq_transformer.py)
    Seq2SeqRNN           GRU encoder, GRU decoder with Bahdanau or Luong attention
                         (seq2seq_rnn.py)
    greedy_decode, beam_search   decoding either of them (decoding.py)

Both models share one interface, which the decoders use:
    logits = model(src (B, S), tgt_in (B, T))          teacher forcing -> (B, T, V)
    logits, attn = model(src, tgt_in, return_attention=True)   attn: cross-attention weights
    memory = model.encode(src)                          the encoder's output, run once
    cache = model.init_cache(memory)                    the decoder's state before any token
    log_probs, cache = model.decode_step(memory, tokens, cache)   (B, V) for the next token
    state = model.reorder(memory or cache, index)      rows picked by index (beam search)
Batches for teacher forcing: tinytorch.data.make_teacher_forcing_batch.
"""

from .decoding import beam_search, beam_step, greedy_decode, length_penalty  # noqa: F401
from .seq2seq_rnn import RNNCache, RNNMemory, Seq2SeqRNN  # noqa: F401
from .seq2seq_transformer import (  # noqa: F401
    Seq2SeqTransformer,
    TransformerCache,
    TransformerMemory,
    decoder_masks,
    padding_mask,
)
