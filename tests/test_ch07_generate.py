"""Chapter 07: generation - the KV cache, greedy decoding, temperature, top-k, top-p, seeds."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch.generate import generate, logits_to_probs, sample, top_k_filter, top_p_filter
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


def test_generation_with_and_without_cache_agree_past_block_size(device):
    model = _model(device, block_size=8)
    prompt = tt.randint(0, V, (2, 5), device=device)
    # 15 new tokens: the context slides past block_size=8, where the cache must recompute
    a = generate(model, prompt, 15, seed=3)
    b = generate(model, prompt, 15, seed=3, use_cache=False)
    assert a.shape == (2, 20) and a.device == device
    assert np.array_equal(to_numpy(a), to_numpy(b))
    assert np.array_equal(to_numpy(a)[:, :5], to_numpy(prompt))


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
        ids = sample(probs, gen)
        assert all(i in top5[r] for r, i in enumerate(ids))
    kept = np.isfinite(top_k_filter(logits, 5))
    assert (kept.sum(1) == 5).all()


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
            assert kept[np.arange(5), sample(probs, gen)].all()
    one_hot = np.full((1, 6), -np.inf)
    one_hot[0, 2] = 0.0
    assert np.isfinite(top_p_filter(one_hot, 0.5)).sum() == 1


def test_sampling_follows_the_distribution():
    probs = np.array([[0.1, 0.0, 0.6, 0.3]])
    gen = np.random.default_rng()
    draws = np.array([sample(probs, gen)[0] for _ in range(4000)])
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
