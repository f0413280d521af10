"""Chapter 07: generation - the KV cache, greedy decoding, temperature, top-k, top-p, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.generate import (
    generate,
    logits_to_probs,
    sample,
    sample_from_probs,
    top_k_filter,
    top_p_filter,
)
from tinytorch.models import GPT, GPTConfig

pytestmark = pytest.mark.ch07

V = 13


def _model(device="cpu", block_size=12, dtype="float64"):
    config = GPTConfig(
        block_size=block_size, vocab_size=V, n_layer=2, n_head=2, n_embd=8, bias=True
    )
    model = GPT(config).to(dtype).to(device)
    with tt.no_grad():  # larger weights than GPT-2's 0.02 so the logits differ visibly
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.exercise("kv_cache")
def test_kv_cache_gives_the_full_forwards_logits_at_every_step(device):
    model = _model(device)
    idx = tt.randint(0, V, (3, 12), device=device)
    with tt.no_grad():
        full, _ = model(idx)
        cache = model.make_kv_cache(3)
        pieces = [(0, 4), (4, 5), (5, 6), (6, 9), (9, 12)]  # a prompt, single tokens, a chunk
        for a, b in pieces:
            step, _ = model(idx[:, a:b], cache=cache)
            assert_close(step, to_numpy(full)[:, a:b], msg=f"positions {a}..{b}")
        assert cache.pos == 12
        with pytest.raises(ValueError, match="12 cached \\+ 1 new = 13.*block_size is only 12"):
            model(idx[:, :1], cache=cache)


@pytest.mark.exercise("generate_loop")
def test_generation_with_and_without_cache_agree_past_block_size(device):
    model = _model(device, block_size=8)
    prompt = tt.randint(0, V, (2, 5), device=device)
    # 15 new tokens: the context slides past block_size=8, where the cache must recompute
    a = generate(model, prompt, 15, seed=3)
    b = generate(model, prompt, 15, seed=3, use_cache=False)
    assert a.shape == (2, 20) and a.device == device
    assert np.array_equal(to_numpy(a), to_numpy(b))
    assert np.array_equal(to_numpy(a)[:, :5], to_numpy(prompt))


@pytest.mark.exercise("generate_loop")
def test_greedy_is_argmax_and_low_temperature_is_greedy():
    model = _model()
    prompt = tt.randint(0, V, (2, 3))
    greedy = to_numpy(generate(model, prompt, 8, do_sample=False))
    tokens = to_numpy(prompt)
    for _ in range(8):  # greedy by hand: argmax of the last position's logits, appended
        logits, _ = model(tt.tensor(tokens))
        nxt = to_numpy(logits.detach())[:, -1].argmax(-1)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
    assert np.array_equal(greedy, tokens)
    assert np.array_equal(to_numpy(generate(model, prompt, 8, temperature=1e-6, seed=1)), greedy)
    assert np.array_equal(to_numpy(generate(model, prompt, 8, temperature=0.0)), greedy)


def test_same_seed_same_text_and_num_return_sequences():
    model = _model()
    prompt = tt.randint(0, V, (2, 4))
    a = generate(model, prompt, 10, seed=7, num_return_sequences=3, top_k=5)
    b = generate(model, prompt, 10, seed=7, num_return_sequences=3, top_k=5)
    c = generate(model, prompt, 10, seed=8, num_return_sequences=3, top_k=5)
    assert a.shape == (6, 14)
    assert np.array_equal(to_numpy(a), to_numpy(b))
    assert not np.array_equal(to_numpy(a), to_numpy(c))
    rows = to_numpy(a)
    assert all(np.array_equal(rows[i, :4], to_numpy(prompt)[i // 3]) for i in range(6))
    tt.manual_seed(5)
    d = generate(model, prompt, 10)
    tt.manual_seed(5)
    assert np.array_equal(to_numpy(d), to_numpy(generate(model, prompt, 10)))


@pytest.mark.exercise("temperature_top_k")
def test_top_k_never_samples_outside_the_top_k():
    rng = np.random.default_rng()
    logits = rng.standard_normal((4, 50))
    probs = logits_to_probs(logits, top_k=5)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    outside = np.ones_like(probs, dtype=bool)
    np.put_along_axis(outside, top5, False, axis=1)
    assert not probs[outside].any()
    np.testing.assert_allclose(probs.sum(1), 1.0)
    gen = np.random.default_rng()
    for _ in range(200):
        ids = sample_from_probs(probs, gen)
        assert all(i in top5[r] for r, i in enumerate(ids))
    kept = np.isfinite(top_k_filter(logits, 5))
    assert (kept.sum(1) == 5).all()


@pytest.mark.exercise("top_p")
def test_top_p_keeps_the_smallest_set_with_mass_p():
    rng = np.random.default_rng()
    logits = rng.standard_normal((5, 40)) * 2
    for p in (0.1, 0.5, 0.9, 0.999):
        kept = np.isfinite(top_p_filter(logits, p))
        full = logits_to_probs(logits)
        for row in range(5):
            order = np.argsort(-full[row])
            mass = np.cumsum(full[row][order])
            need = int(np.searchsorted(mass, p) + 1)  # smallest prefix with mass >= p
            assert set(np.flatnonzero(kept[row])) == set(order[:need].tolist())
        probs = logits_to_probs(logits, top_p=p)
        assert not probs[~kept].any()
        gen = np.random.default_rng()
        for _ in range(50):
            assert kept[np.arange(5), sample_from_probs(probs, gen)].all()
    one_hot = np.full((1, 6), -np.inf)
    one_hot[0, 2] = 0.0
    assert np.isfinite(top_p_filter(one_hot, 0.5)).sum() == 1


def test_sampling_follows_the_distribution():
    probs = np.array([[0.1, 0.0, 0.6, 0.3]])
    gen = np.random.default_rng()
    draws = np.array([sample_from_probs(probs, gen)[0] for _ in range(4000)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert freq[1] == 0
    np.testing.assert_allclose(freq, probs[0], atol=0.03)


def test_eos_stops_and_pads_and_mode_is_restored():
    model = _model()
    prompt = tt.randint(0, V, (4, 3))
    free = to_numpy(generate(model, prompt, 12, seed=11))
    eos = int(free[0, 3])  # the first row's first new token: it finishes at once
    out = to_numpy(generate(model, prompt, 12, seed=11, eos_token_id=eos))
    for row_free, row in zip(free, out):
        new = row[3:]
        hits = np.flatnonzero(new == eos)
        if hits.size:  # identical up to the first eos, then eos only
            first = hits[0]
            assert np.array_equal(new[: first + 1], row_free[3 : 3 + first + 1])
            assert (new[first:] == eos).all()
        else:
            assert np.array_equal(row, row_free[: len(row)])
    model.train()
    generate(model, prompt, 2)
    assert model.training
    with pytest.raises(ValueError, match="temperature must be > 0"):
        logits_to_probs(np.zeros((1, 3)), temperature=-1.0)


@pytest.mark.exercise("temperature_top_k")
def test_temperature_divides_the_logits_before_the_softmax():
    logits = np.random.default_rng().standard_normal((3, 9)) * 3
    for t in (0.3, 1.0, 2.5):
        e = np.exp(logits / t - (logits / t).max(1, keepdims=True))
        assert_close(logits_to_probs(logits, temperature=t), e / e.sum(1, keepdims=True))
    cold, hot = logits_to_probs(logits, 0.1), logits_to_probs(logits, 10.0)
    assert (cold.max(1) > hot.max(1)).all()  # T < 1 sharpens, T > 1 flattens


@pytest.mark.exercise("temperature_top_k")
def test_sample_is_argmax_at_temperature_0_and_follows_top_k():
    rng = np.random.default_rng()
    logits = rng.standard_normal((4, 20))
    assert np.array_equal(sample(logits, temperature=0), logits.argmax(1))
    assert np.array_equal(sample(tt.tensor(logits), top_k=1), logits.argmax(1))
    top3 = np.argsort(-logits, axis=1)[:, :3]
    gen = np.random.default_rng(0)
    for _ in range(100):
        ids = sample(logits, temperature=1.5, top_k=3, generator=gen)
        assert ids.shape == (4,) and all(i in top3[r] for r, i in enumerate(ids))
    a = sample(logits, generator=np.random.default_rng(5))
    assert np.array_equal(a, sample(logits, generator=np.random.default_rng(5)))


class _Counter(tt.nn.Module):
    """A fake language model: the next token is (last token + 1) mod V, for sure. It records
    the length of every input it is given, and has a block_size of 4."""

    class config:
        block_size = 4

    def __init__(self):
        super().__init__()
        self.lengths = []

    def forward(self, idx):
        self.lengths.append(idx.shape[1])
        ids = to_numpy(idx)
        logits = np.full((*ids.shape, V), -30.0)
        np.put_along_axis(logits, ((ids + 1) % V)[..., None], 30.0, axis=-1)
        return tt.tensor(logits), None


@pytest.mark.exercise("generate_loop")
def test_generate_loop_appends_and_crops_to_block_size():
    model = _Counter()
    prompt = tt.tensor([[0, 1], [5, 6]])
    out = to_numpy(generate(model, prompt, 7, do_sample=False))
    expected = np.array([[(a + i) % V for i in range(9)] for a in (0, 5)])
    assert np.array_equal(out, expected)
    assert model.lengths == [2, 3, 4, 4, 4, 4, 4]  # never more than block_size tokens
    sampled = to_numpy(generate(model, prompt, 5, temperature=1.0, seed=0))
    assert np.array_equal(sampled, expected[:, :7])  # the distribution is one-hot here
