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
Batches for teacher forcing: tinytorch.data.make_teacher_forcing_batch; their loss:
seq2seq_loss (train_step(model, opt, batch, loss_fn=partial(seq2seq_loss, label_smoothing=0.1))).
"""

from ..nn import functional as F
from .decoding import beam_search, beam_step, greedy_decode, length_penalty  # noqa: F401
from .seq2seq_rnn import RNNCache, RNNMemory, Seq2SeqRNN  # noqa: F401
from .seq2seq_transformer import (  # noqa: F401
    Seq2SeqTransformer,
    TransformerCache,
    TransformerMemory,
    decoder_masks,
    padding_mask,
)


def seq2seq_loss(model, batch, label_smoothing: float = 0.0, ignore_index: int = -100):
    """Teacher forcing's loss on batch = (src, tgt_in, tgt_out): the mean cross-entropy of
    model(src, tgt_in) (B, T, V) against tgt_out (B, T) over the positions that are not
    ignore_index, with label smoothing (the loss_fn of tinytorch.train.train_step)."""
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        tgt_out.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
