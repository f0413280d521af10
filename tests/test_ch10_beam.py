"""Chapter 10: greedy decoding and beam search (tinytorch.models.decoding).

Oracles: enumeration of every hypothesis on models small enough to list them all (a table of
log-probabilities per prefix, and a tiny Seq2SeqTransformer), a plain one-sentence beam search
written here from the rules in decoding.py's docstring, and the batched search against one
sentence at a time. Beam width 1 without length penalty is greedy decoding.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import assert_close

import tinytorch as tt
from tinytorch.models import Seq2SeqRNN, Seq2SeqTransformer, beam_search, greedy_decode
from tinytorch.models.decoding import beam_step, length_penalty, top_k_indices

pytestmark = [pytest.mark.ch10]

PAD, BOS, EOS = 0, 1, 2


def _lp(n, alpha):
    return ((5 + n) / 6) ** alpha


class TableModel:
    """The decoding interface over a fixed random table: the next token's log-probabilities
    depend on (sentence, prefix) only, so every hypothesis can be scored by hand. A sentence
    is named by its source's first id; `eos_bias` makes the end token likelier or rarer."""

    def __init__(self, vocab: int, seed: int, eos_bias: float = 0.0):
        self.V, self.seed, self.eos_bias, self.training = vocab, seed, eos_bias, False
        self.calls = 0

    def train(self, mode=True):
        self.training = mode

    def eval(self):
        self.train(False)

    def log_probs(self, sentence: int, prefix) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(sentence), *map(int, prefix)])
        x = 1.5 * rng.standard_normal(self.V)
        x[EOS] += self.eos_bias
        return x - np.log(np.exp(x - x.max()).sum()) - x.max()

    def encode(self, src):
        return np.asarray(src.data[:, 0])

    def init_cache(self, memory):
        return np.zeros((len(memory), 0), dtype=np.int64)

    def reorder(self, state, index):
        return state[np.asarray(index)]

    def decode_step(self, memory, tokens, cache):
        self.calls += 1
        prefixes = (
            np.asarray(tokens.data) if cache is None else np.concatenate([cache, tokens.data], 1)
        )
        lp = np.stack([self.log_probs(s, p) for s, p in zip(memory, prefixes)])
        return tt.tensor(lp), (None if cache is None else prefixes)

    def score(self, sentence, hyp, ended: bool) -> float:
        """Sum of log-probs of hyp (+ EOS when ended) after BOS."""
        seq = [BOS, *hyp] + ([EOS] if ended else [])
        return sum(self.log_probs(sentence, seq[:t])[seq[t]] for t in range(1, len(seq)))


def _enumerate(score, V, max_len, alpha):
    """Every hypothesis (ids, rank score) with its length penalty: ended by EOS within max_len,
    or max_len tokens without EOS."""
    out = []
    words = [v for v in range(V) if v != EOS]
    for n in range(max_len + 1):
        for hyp in itertools.product(words, repeat=n):
            if n < max_len:
                out.append((list(hyp), score(list(hyp), True) / _lp(n + 1, alpha)))
            else:
                out.append((list(hyp), score(list(hyp), False) / _lp(n, alpha)))
    return sorted(out, key=lambda h: -h[1])


def _reference_beam(model, sentence, K, max_len, alpha, early_stop=True):
    """One sentence, lists and loops, following decoding.py's rules."""
    alive, finished = [(0.0, [])], []
    for step in range(max_len):
        cands = []
        for b, (s, toks) in enumerate(alive):
            lp = model.log_probs(sentence, [BOS, *toks])
            cands += [(s + lp[v], b * model.V + v, [*toks, v]) for v in range(model.V)]
        cands.sort(key=lambda c: (-c[0], c[1]))
        alive = []
        for r, (s, _, toks) in enumerate(cands[: 2 * K]):
            if len(alive) == K:
                break
            if toks[-1] == EOS:
                if r < K:
                    finished.append((s / _lp(step + 1, alpha), toks[:-1]))
            else:
                alive.append((s, toks))
        if step == max_len - 1:
            finished += [(s / _lp(max_len, alpha), t) for s, t in alive]
        elif early_stop and len(finished) >= K:
            kth = sorted((f[0] for f in finished), reverse=True)[K - 1]
            if kth >= max(s for s, _ in alive) / _lp(max_len, alpha):
                break
    finished.sort(key=lambda f: -f[0])
    return finished


# ---- exercises: length_penalty, beam_step -------------------------------------------------------
@pytest.mark.exercise("length_penalty")
def test_length_penalty_values():
    n = np.arange(1, 30)
    for alpha in (0.0, 0.6, 1.0, 2.0):
        assert_close(length_penalty(n, alpha), ((5 + n) / 6) ** alpha)
    assert float(length_penalty(1, 0.6)) == 1.0  # one token: no penalty
    assert float(length_penalty(7, 0.0)) == 1.0


@pytest.mark.exercise("length_penalty")
def test_length_penalty_changes_the_winner():
    """Alpha trades a short, likely hypothesis for a longer one: the winner is the best rank."""
    model = TableModel(4, seed=3)
    src = tt.tensor(np.array([[5]]))
    for alpha in (0.0, 1.0, 3.0):
        best = _enumerate(lambda h, e: model.score(5, h, e), 4, 3, alpha)[0]
        hyp, score = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=16, max_len=3,
                                 length_penalty=alpha, return_scores=True)  # fmt: skip
        assert hyp == [best[0]]
        assert_close(np.array(score), np.array([best[1]]))


def test_top_k_indices_is_a_partial_sort():
    rng = np.random.default_rng()
    for _ in range(50):
        x = rng.integers(0, 4, (3, int(rng.integers(1, 12)))).astype(float)
        x[x == 0] = -np.inf  # ties, and empty slots
        k = int(rng.integers(1, 15))
        got = top_k_indices(x, k)
        assert got.shape == (3, min(k, x.shape[1]))
        assert all(len(set(row)) == len(row) for row in got.tolist())  # distinct columns
        np.testing.assert_array_equal(
            np.take_along_axis(x, got, 1), -np.sort(-x, axis=1)[:, : got.shape[1]]
        )
    y = rng.standard_normal((4, 30))  # no ties: exactly argsort's order
    np.testing.assert_array_equal(top_k_indices(y, 5), np.argsort(-y, axis=1)[:, :5])


@pytest.mark.exercise("beam_step")
def test_beam_step_against_brute_force():
    rng = np.random.default_rng()
    B, K, V, k = 3, 4, 5, 6
    scores = rng.standard_normal((B, K))
    scores[1, 2:] = -np.inf  # empty slots
    log_probs = np.log(rng.dirichlet(np.ones(V), size=(B, K)))
    new, beam, token = beam_step(scores, log_probs, k)
    assert new.shape == beam.shape == token.shape == (B, k)
    for i in range(B):
        flat = sorted(
            ((scores[i, b] + log_probs[i, b, v], b, v) for b in range(K) for v in range(V)),
            key=lambda c: -c[0],
        )[:k]
        np.testing.assert_allclose(new[i], [c[0] for c in flat])
        np.testing.assert_array_equal(beam[i], [c[1] for c in flat])
        np.testing.assert_array_equal(token[i], [c[2] for c in flat])


@pytest.mark.exercise("beam_step")
def test_beam_step_first_step_expands_one_beam():
    """K equal beams at the start: only the first is live (the others at -inf), so the k best
    are the first beam's k most likely tokens."""
    rng = np.random.default_rng()
    log_probs = np.log(rng.dirichlet(np.ones(7), size=(2, 3)))
    scores = np.array([[0.0, -np.inf, -np.inf]] * 2)
    new, beam, token = beam_step(scores, log_probs, 3)
    assert (beam == 0).all()
    order = np.argsort(-log_probs[:, 0], axis=1)[:, :3]
    np.testing.assert_array_equal(token, order)
    np.testing.assert_allclose(new, np.take_along_axis(log_probs[:, 0], order, 1))


# ---- beam search on enumerable models ------------------------------------------------------------
@pytest.mark.exercise("beam_step")
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_exhaustive_beam_returns_the_enumerated_ranking(alpha):
    """V = 4, max_len = 3: 40 hypotheses. A beam of 36 prunes nothing, so the n best must be
    the enumeration's, in its order, with its scores (length penalty included)."""
    model = TableModel(4, seed=11)
    src = tt.tensor(np.array([[5], [8]]))
    kw = dict(beam_size=36, max_len=3, length_penalty=alpha, num_return_sequences=12)
    hyps, scores = beam_search(model, src, bos_id=BOS, eos_id=EOS, return_scores=True, **kw)
    for i, s in enumerate((5, 8)):
        want = _enumerate(lambda h, e, s=s: model.score(s, h, e), 4, 3, alpha)[:12]
        assert hyps[i] == [h for h, _ in want]
        assert_close(np.array(scores[i]), np.array([r for _, r in want]))


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_exhaustive_beam_on_a_tiny_transformer(alpha):
    """The same enumeration on a real model: scores from full-prefix decoding steps (no
    cache), beam search with the KV cache."""
    rng = np.random.default_rng()
    model = Seq2SeqTransformer(6, 4, d_model=8, nhead=2, dim_feedforward=8, dropout=0.0,
                               max_len=6, dtype=np.float64)  # fmt: skip
    model.eval()
    src = rng.integers(3, 6, (2, 3))
    with tt.no_grad():
        memory = model.encode(tt.tensor(src))
        cache = {}

        def step(i, prefix):  # log-probs after a prefix, computed once per prefix
            if (i, prefix) not in cache:
                mem = model.reorder(memory, [i])
                cache[i, prefix] = model.decode_step(mem, tt.tensor([prefix]), None)[0].data[0]
            return cache[i, prefix]

        def score(i, hyp, ended):
            seq = (BOS, *hyp) + ((EOS,) if ended else ())
            return sum(float(step(i, seq[:t])[seq[t]]) for t in range(1, len(seq)))

    hyps, scores = beam_search(model, tt.tensor(src), bos_id=BOS, eos_id=EOS, beam_size=36,
                               max_len=3, length_penalty=alpha, return_scores=True,
                               num_return_sequences=8)  # fmt: skip
    for i in range(2):
        want = _enumerate(lambda h, e, i=i: score(i, h, e), 4, 3, alpha)[:8]
        assert hyps[i] == [h for h, _ in want]
        assert_close(np.array(scores[i]), np.array([r for _, r in want]))


@pytest.mark.parametrize("K, alpha, eos_bias", [(2, 0.6, 0.0), (3, 1.0, 1.0), (4, 0.0, -1.0)])
def test_pruning_beam_matches_a_plain_reference(K, alpha, eos_bias):
    model = TableModel(6, seed=int(np.random.default_rng().integers(1 << 30)), eos_bias=eos_bias)
    sentences = [3, 9, 4, 17]
    src = tt.tensor(np.array(sentences)[:, None])
    hyps, scores = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=K, max_len=5,
                               length_penalty=alpha, return_scores=True,
                               num_return_sequences=K)  # fmt: skip
    for i, s in enumerate(sentences):
        ref = _reference_beam(model, s, K, 5, alpha)[:K]
        assert hyps[i] == [h for _, h in ref]
        assert_close(np.array(scores[i]), np.array([r for r, _ in ref]))
        # stopping early never loses the best: searching to max_len finds nothing better
        assert _reference_beam(model, s, K, 5, alpha, early_stop=False)[0][1] == hyps[i][0]


def test_hypotheses_end_at_eos_or_max_len():
    src = tt.tensor(np.array([[3], [4]]))
    never = TableModel(5, seed=1, eos_bias=-50.0)  # EOS (almost) impossible: max_len tokens
    for out in (
        greedy_decode(never, src, bos_id=BOS, eos_id=EOS, max_len=4),
        beam_search(never, src, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=4),
    ):
        assert [len(h) for h in out] == [4, 4] and all(EOS not in h for h in out)
    always = TableModel(5, seed=1, eos_bias=50.0)  # EOS first: empty outputs
    assert greedy_decode(always, src, bos_id=BOS, eos_id=EOS, max_len=4) == [[], []]
    assert beam_search(always, src, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=4) == [[], []]


def test_decoding_rejects_bad_arguments():
    model, src = TableModel(5, seed=1), tt.tensor(np.array([[3]]))
    with pytest.raises(ValueError, match="num_return_sequences"):
        beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=2, max_len=3,
                    num_return_sequences=3)  # fmt: skip
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=0)


# ---- real models: greedy, beam width 1, batching, the cache -------------------------------------
def _models():
    return {
        "transformer": Seq2SeqTransformer(
            11, 13, d_model=16, nhead=2, dim_feedforward=24, max_len=12, dtype=np.float64
        ),
        "rnn-bahdanau": Seq2SeqRNN(11, 13, emb_dim=6, hidden_size=8, dtype=np.float64),
        "rnn-luong": Seq2SeqRNN(
            11, 13, emb_dim=6, hidden_size=8, attention="luong", dtype=np.float64
        ),  # fmt: skip
    }


def _src(rng, lengths):
    out = np.full((len(lengths), max(lengths)), PAD, dtype=np.int64)
    for i, n in enumerate(lengths):
        out[i, :n] = rng.integers(3, 11, n)
    return out


@pytest.mark.parametrize("name", ["transformer", "rnn-bahdanau", "rnn-luong"])
def test_greedy_equals_beam_of_one(name):
    rng = np.random.default_rng()
    model = _models()[name]
    src = tt.tensor(_src(rng, [5, 2, 4, 3]))
    greedy = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=8)
    assert model.training  # the mode is restored
    assert greedy == greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=8, use_cache=False)
    for use_cache in (True, False):
        beam = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=1, max_len=8,
                           length_penalty=0.0, use_cache=use_cache)  # fmt: skip
        assert beam == greedy


def test_greedy_equals_beam_of_one_with_eos_on_a_table():
    model = TableModel(5, seed=7, eos_bias=1.5)
    src = tt.tensor(np.arange(3, 23)[:, None])
    greedy = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_len=6)
    assert any(len(g) < 6 for g in greedy)  # some sentences end early
    assert greedy == beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=1, max_len=6,
                                 length_penalty=0.0)  # fmt: skip


@pytest.mark.parametrize("name", ["transformer", "rnn-bahdanau", "rnn-luong"])
def test_batched_beam_equals_one_sentence_at_a_time(name):
    rng = np.random.default_rng()
    model = _models()[name]
    lengths = [5, 2, 4, 3]
    src = _src(rng, lengths)
    kw = dict(bos_id=BOS, eos_id=EOS, beam_size=3, max_len=7, return_scores=True)
    hyps, scores = beam_search(model, tt.tensor(src), **kw)
    nocache = beam_search(model, tt.tensor(src), use_cache=False, **kw)
    assert nocache[0] == hyps
    assert_close(np.array(nocache[1]), np.array(scores))
    for i, n in enumerate(lengths):
        one, s = beam_search(model, tt.tensor(src[i : i + 1, :n]), **kw)
        assert one == [hyps[i]]
        assert_close(np.array(s), np.array([scores[i]]))


def test_beam_search_runs_the_encoder_once_and_feeds_one_token_per_step():
    model = TableModel(6, seed=5)
    src = tt.tensor(np.array([[3], [4], [5]]))
    seen = []
    step = model.decode_step

    def spy(memory, tokens, cache):
        seen.append(tokens.shape[1])
        return step(memory, tokens, cache)

    model.decode_step = spy
    encode_calls = []
    encode = model.encode
    model.encode = lambda s: encode_calls.append(1) or encode(s)
    beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=5)
    assert encode_calls == [1] and set(seen) == {1}
    seen.clear()
    beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=3, max_len=5, use_cache=False)
    assert seen == list(range(1, len(seen) + 1))  # the whole prefix, one longer each step


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_stopping_early_never_loses_the_best(alpha):
    """A sentence stops once no alive beam can still rank above its K-th finished hypothesis;
    with a strong length penalty longer hypotheses can overtake, so the bound must use the
    largest penalty, lp(max_len). Against the same search run to max_len, on 100 sentences."""
    model = TableModel(5, seed=int(np.random.default_rng().integers(1 << 30)), eos_bias=1.0)
    sentences = list(range(3, 103))
    src = tt.tensor(np.array(sentences)[:, None])
    hyps = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=2, max_len=6,
                       length_penalty=alpha)  # fmt: skip
    for i, s in enumerate(sentences):
        assert hyps[i] == _reference_beam(model, s, 2, 6, alpha, early_stop=False)[0][1]
