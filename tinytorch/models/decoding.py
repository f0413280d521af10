"""Decoding an encoder-decoder: greedy search and beam search (chapter 10).

    greedy_decode(model, src, *, bos_id, eos_id, max_len, use_cache=True) -> list[list[int]]
    beam_search(model, src, *, bos_id, eos_id, beam_size=4, max_len, length_penalty=0.6,
                use_cache=True, return_scores=False, num_return_sequences=1)

Both drive any model with the interface of Seq2SeqTransformer and Seq2SeqRNN:
`encode(src) -> memory`, `init_cache(memory) -> cache`, `decode_step(memory, tokens, cache)
-> (log_probs (rows, V), cache)` and `reorder(memory or cache, index)`. The encoder runs once
per batch. With use_cache=True the decoder is fed only the newest token at each step (its
state, the Transformer's KV cache or the RNN's hidden state, carries the prefix); with
use_cache=False it re-reads the whole prefix at every step (the work the cache saves).
Sentences that are finished leave the batch (their rows are dropped with `reorder`).

Output, per sentence: the ids generated after BOS, up to and excluding EOS; a hypothesis
that never produced EOS stops after max_len tokens. The model runs in eval mode (restored
afterwards), without gradients.

Beam search keeps beam_size (K) hypotheses per sentence, as B * K rows of one batch.
- A hypothesis' score is the sum of the log-probabilities of its tokens (EOS included).
- Length penalty (GNMT, Wu et al. 2016, eq. 14): finished hypotheses Y are ranked by
      score(Y) / lp(Y),    lp(Y) = ((5 + |Y|) / 6) ** alpha,    alpha = length_penalty,
  |Y| counting its tokens with the EOS. Every token adds a negative log-probability, so raw
  scores favour short outputs; alpha = 0 ranks by raw score, larger alpha favours longer ones.
- One step (`beam_step`): every alive beam's score plus its next-token log-probabilities,
  the best 2K of the K * V candidates of each sentence. A candidate ending in EOS among the
  first K joins its sentence's finished list; the first K others are the next alive beams
  (2K candidates always hold K that do not end in EOS when V > K).
- A sentence is done when it has K finished hypotheses and no alive beam can beat the worst
  of the best K: an alive score s only falls (log-probabilities are <= 0), so the best rank
  it can still reach is s / lp(max_len). The test is exact, not a heuristic cut-off. After
  max_len steps the alive beams are finished as they are (without EOS).
With length_penalty=0, beam_size=1 returns greedy decoding's output.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor
from .seq2seq_transformer import check_ids

__all__ = ["greedy_decode", "beam_search", "beam_step", "length_penalty", "top_k_indices"]


def length_penalty(length, alpha: float):
    """GNMT's lp = ((5 + length) / 6) ** alpha (length: a number or an array of them)."""
    # BEGIN EXERCISE ch10: length_penalty - ((5 + length) / 6) ** alpha
    lp = ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** alpha
    # END EXERCISE
    return lp


def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """The column indices (B, k) of each row's k largest entries of x (B, N), largest first
    (equal values in any order). A partial sort: O(N) per row, then k log k, not N log N."""
    k = min(k, x.shape[1])
    part = np.argpartition(x, -k, axis=1)[:, -k:] if k < x.shape[1] else np.indices(x.shape)[1]
    vals = np.take_along_axis(x, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")  # the k chosen, best first
    return np.take_along_axis(part, order, axis=1)


def beam_step(scores: np.ndarray, log_probs: np.ndarray, k: int):
    """One step of beam search for B sentences with K alive beams each.

    scores (B, K) (the beams' summed log-probs, -inf for an empty slot), log_probs (B, K, V)
    (each beam's next token) -> the k best continuations of each sentence, best first:
    new_scores (B, k), beam (B, k) (the parent's index within its sentence, 0..K-1) and
    token (B, k) (the appended id). Use top_k_indices(x, k) for the k best of each row.
    """
    B, K, V = log_probs.shape
    # BEGIN EXERCISE ch10: beam_step - add scores, top k of each sentence's K*V, parent and token
    cand = (scores[:, :, None] + log_probs).reshape(B, K * V)  # every one-token extension
    top = top_k_indices(cand, k)  # flat indices beam * V + token
    new_scores = np.take_along_axis(cand, top, axis=1)
    beam, token = top // V, top % V
    # END EXERCISE
    return new_scores, beam, token


@contextlib.contextmanager
def _inference(model):
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train(was_training)


def _host(log_probs) -> np.ndarray:
    a = log_probs.data if isinstance(log_probs, Tensor) else log_probs
    return np.asarray(backend.to_device(a, "cpu"), dtype=np.float64)


def _feed(seqs: np.ndarray, use_cache: bool, device: str) -> Tensor:
    feed = seqs[:, -1:] if use_cache else seqs
    return Tensor._wrap(backend.to_device(np.ascontiguousarray(feed, dtype=np.int64), device))


def _check(max_len, **ids):
    if max_len < 1:
        raise ValueError(f"decoding: max_len must be >= 1, got {max_len}")
    for name, value in ids.items():
        if not isinstance(value, int | np.integer):
            raise TypeError(f"decoding: {name} must be an int token id, got {value!r}")


def greedy_decode(model, src, *, bos_id: int, eos_id: int, max_len: int, use_cache: bool = True):
    """The most likely next token at every step, for each row of src (B, S)."""
    _check(max_len, bos_id=bos_id, eos_id=eos_id)
    src = check_ids(src, "greedy_decode: src")
    B = src.shape[0]
    out: list = [None] * B
    with _inference(model):
        memory = model.encode(src)
        cache = model.init_cache(memory) if use_cache else None
        seqs = np.full((B, 1), bos_id, dtype=np.int64)
        active = np.arange(B)  # the sentence of each row
        for step in range(max_len):
            log_probs, cache = model.decode_step(memory, _feed(seqs, use_cache, src.device), cache)
            nxt = _host(log_probs).argmax(axis=-1)
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            done = (nxt == eos_id) | (step == max_len - 1)
            for j in np.flatnonzero(done):
                ids = seqs[j, 1:].tolist()
                out[active[j]] = ids[:-1] if ids[-1] == eos_id else ids
            if done.all():
                break
            if done.any():  # finished sentences leave the batch
                keep = np.flatnonzero(~done)
                active, seqs = active[keep], seqs[keep]
                memory = model.reorder(memory, keep)
                cache = model.reorder(cache, keep) if cache is not None else None
    return out


def beam_search(
    model,
    src,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    max_len: int,
    length_penalty: float = 0.6,
    use_cache: bool = True,
    return_scores: bool = False,
    num_return_sequences: int = 1,
):
    """Beam search for each row of src (B, S), all sentences in one batch of B * beam_size
    rows (see the module docstring for the scoring).

    Returns the best hypothesis of each sentence (list[list[int]]); with
    num_return_sequences = n > 1, a list of the n best (best first) per sentence; with
    return_scores=True, (hypotheses, scores) where scores are the ranking scores
    sum(log p) / lp, shaped like the hypotheses' lists.
    """
    _check(max_len, bos_id=bos_id, eos_id=eos_id)
    K, alpha = beam_size, length_penalty
    if not 1 <= num_return_sequences <= K:
        raise ValueError(
            f"beam_search: num_return_sequences must be in 1..beam_size={K}, "
            f"got {num_return_sequences}"
        )
    src = check_ids(src, "beam_search: src")
    B = src.shape[0]
    lp_max = float(_length_penalty(max_len, alpha))
    finished: list[list] = [[] for _ in range(B)]  # per sentence: (rank, tokens)
    with _inference(model):
        memory = model.reorder(model.encode(src), np.repeat(np.arange(B), K))
        cache = model.init_cache(memory) if use_cache else None
        scores = np.full((B, K), -np.inf)
        scores[:, 0] = 0.0  # the K beams start equal: expand only the first
        seqs = np.full((B * K, 1), bos_id, dtype=np.int64)
        active = np.arange(B)
        for step in range(max_len):
            n, length = len(active), step + 1
            log_probs, cache = model.decode_step(memory, _feed(seqs, use_cache, src.device), cache)
            log_probs = _host(log_probs).reshape(n, K, -1)
            top, beam, token = beam_step(scores, log_probs, 2 * K)
            new_scores = np.full((n, K), -np.inf)
            parent = np.zeros((n, K), dtype=np.int64)
            new_token = np.full((n, K), eos_id, dtype=np.int64)
            lp = float(_length_penalty(length, alpha))
            for j in range(n):
                alive = 0
                for r in range(top.shape[1]):
                    if alive == K or not np.isfinite(top[j, r]):
                        break
                    if token[j, r] == eos_id:
                        if r < K:
                            hyp = seqs[j * K + beam[j, r], 1:].tolist()
                            finished[active[j]].append((top[j, r] / lp, hyp))
                        continue
                    new_scores[j, alive] = top[j, r]
                    parent[j, alive], new_token[j, alive] = beam[j, r], token[j, r]
                    alive += 1
            rows = (np.arange(n)[:, None] * K + parent).reshape(-1)
            seqs = np.concatenate([seqs[rows], new_token.reshape(-1, 1)], axis=1)
            scores = new_scores
            done = np.zeros(n, dtype=bool)
            for j in range(n):
                fin, ok = finished[active[j]], np.isfinite(scores[j])
                if step == max_len - 1:  # out of length: the alive beams finish as they are
                    for r in np.flatnonzero(ok):
                        fin.append((scores[j, r] / lp, seqs[j * K + r, 1:].tolist()))
                    done[j] = True
                elif not ok.any():
                    done[j] = True
                elif len(fin) >= K:
                    kth = sorted((f[0] for f in fin), reverse=True)[K - 1]
                    done[j] = kth >= scores[j, ok].max() / lp_max
            if done.all():
                break
            keep = np.flatnonzero(~done)
            rows = (keep[:, None] * K + np.arange(K)).reshape(-1)
            if len(keep) < n:  # finished sentences leave the batch
                active, scores, seqs = active[keep], scores[keep], seqs[rows]
                memory = model.reorder(memory, rows)
            if cache is not None:  # every kept row continues its parent's state
                cache = model.reorder(cache, (np.arange(n)[:, None] * K + parent)[keep].ravel())
    hyps, ranks = [], []
    for fin in finished:
        best = sorted(fin, key=lambda f: -f[0])[:num_return_sequences]  # stable: first found
        hyps.append([f[1] for f in best])
        ranks.append([float(f[0]) for f in best])
    if num_return_sequences == 1:
        hyps = [h[0] if h else [] for h in hyps]
        ranks = [r[0] if r else -np.inf for r in ranks]
    return (hyps, ranks) if return_scores else hyps


_length_penalty = length_penalty  # beam_search's argument of the same name shadows it
