"""translation_cpu and finetune_cpu time each framework in its own worker process.

Each test runs a benchmark's `Run` in two workers (tinytorch.bench_workers.interleave) on a tiny
model and a few hand-made batches: both start from the same weights, so their losses agree step
by step; the tinytorch worker never loads PyTorch, and the PyTorch worker gets OpenMP's default
wait policy (libgomp prints its settings at load with OMP_DISPLAY_ENV=verbose)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tinytorch as tt
from tinytorch.bench import ROOT
from tinytorch.bench_workers import interleave, per_framework, write_job

pytestmark = pytest.mark.ch12


def run_both(module, job, init, tmp_path, steps, chunk=2):
    write_job(tmp_path, init, job)
    return interleave(per_framework(f"benchmarks.{module}:Run", tmp_path), steps=steps, chunk=chunk)


def spin_default_ok(monkeypatch):
    """With OMP_DISPLAY_ENV set, True when the PyTorch worker's libgomp settings can be read."""
    monkeypatch.setenv("OMP_DISPLAY_ENV", "verbose")
    return os.environ.get("TINYTORCH_OMP_WAIT_POLICY") == "1"


@pytest.mark.parametrize("module", ["translation_cpu", "finetune_cpu"])
def test_importing_the_benchmark_loads_neither_torch_nor_transformers(module):
    code = (
        f"import json, sys; import benchmarks.{module}; "
        "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_translation_workers_train_the_same_model_on_the_same_batches(tmp_path, monkeypatch, capfd):
    pytest.importorskip("torch")
    from tinytorch.data.translation import PairBatches
    from tinytorch.models.seq2seq import Seq2SeqTransformer, seq2seq_loss

    check_spin = spin_default_ok(monkeypatch)
    V, ids = 24, dict(pad_id=0, bos_id=1, eos_id=2)
    mk = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
              dim_feedforward=32, dropout=0.0, max_len=16, share_embeddings=True,
              tie_weights=True)  # fmt: skip
    hp = dict(max_tokens=48, lr=1e-2, betas=[0.9, 0.98], warmup=2, min_lr=1e-4,
              weight_decay=0.01, label_smoothing=0.1, clip=1.0)  # fmt: skip
    rng = np.random.default_rng(0)
    src = [rng.integers(3, V, rng.integers(2, 8)).tolist() for _ in range(40)]
    tgt = [rng.integers(3, V, rng.integers(2, 8)).tolist() for _ in range(40)]
    tt.manual_seed(0)
    model = Seq2SeqTransformer(V, V, pad_id=0, **mk)
    init = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    job = dict(src=src, tgt=tgt, ids=ids, pad_id=0, vocab=V, model=mk, hp=hp, steps=5, seed=3)
    runs = run_both("translation_cpu", job, init, tmp_path, steps=5)

    tiny, torch_ = runs["tinytorch"], runs["torch"]
    a, b = tiny["result"]["initial_loss"], torch_["result"]["initial_loss"]
    np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(tiny["outputs"], torch_["outputs"], rtol=1e-4)
    assert len(tiny["times"]) == len(torch_["times"]) == 5
    assert "torch_threads" not in tiny and torch_["torch_threads"] >= 1
    # the twin's trained weights, loaded into a tinytorch model (as the parent does for BLEU),
    # give the loss of tinytorch's own trained model (a per-weight check would fail on
    # parameters whose gradients are near 0, where AdamW's step amplifies rounding)
    trained = {}
    for n, r in runs.items():
        trained[n] = Seq2SeqTransformer(V, V, pad_id=0, **mk)
        trained[n].load_state_dict(dict(np.load(r["result"]["weights"])))
    batch = PairBatches(src, tgt, max_tokens=48, seed=3, **ids)()
    with tt.no_grad():
        loss = {n: seq2seq_loss(m.eval(), batch, 0.1).item() for n, m in trained.items()}
        start = seq2seq_loss(model.eval(), batch, 0.1).item()
    assert abs(loss["tinytorch"] - start) > 1e-3  # training moved the weights
    np.testing.assert_allclose(loss["tinytorch"], loss["torch"], rtol=1e-4)
    if check_spin:
        assert "GOMP_SPINCOUNT = '300000'" in capfd.readouterr().err


def test_finetune_workers_train_the_same_model_and_predict_the_same_labels(
    tmp_path, monkeypatch, capfd
):
    pytest.importorskip("transformers")
    from benchmarks.finetune_cpu import pad
    from tinytorch.models import BertConfig, BertForSequenceClassification

    check_spin = spin_default_ok(monkeypatch)
    config = dict(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)  # fmt: skip
    rng = np.random.default_rng(1)

    def sentences(n):
        return [[2, *rng.integers(4, 30, rng.integers(1, 9)).tolist(), 3] for _ in range(n)]

    batches = [(*pad(sentences(6)), rng.integers(0, 2, 6)) for _ in range(4)]
    tt.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**config), num_labels=2)
    init = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    job = dict(config=config, batches=batches, dev_ids=sentences(150), lr=1e-2, steps=4)
    runs = run_both("finetune_cpu", job, init, tmp_path, steps=4, chunk=3)

    tiny, torch_ = runs["tinytorch"], runs["torch"]
    np.testing.assert_allclose(tiny["outputs"], torch_["outputs"], rtol=1e-4)
    assert "torch_threads" not in tiny and torch_["torch_threads"] >= 1
    pred = {n: r["result"]["dev_pred"] for n, r in runs.items()}
    assert len(pred["tinytorch"]) == 150 and set(pred["tinytorch"]) <= {0, 1}
    assert pred["tinytorch"] == pred["torch"]
    if check_spin:
        assert "GOMP_SPINCOUNT = '300000'" in capfd.readouterr().err
