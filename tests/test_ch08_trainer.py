"""Chapter 08: the Trainer (accumulation, checkpoints, bit-identical resume, early stopping,
NaN handling, progress, logging)."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, to_numpy

import tinytorch as tt
from tinytorch import backend, nn
from tinytorch.data import DataLoader, TensorDataset
from tinytorch.optim import SGD, AdamW
from tinytorch.optim.lr_scheduler import WarmupCosineLR
from tinytorch.serialization import load, save
from tinytorch.train import (
    EarlyStopping,
    LambdaCallback,
    MicroBatches,
    Progress,
    Trainer,
    TrainingDiverged,
    accumulate_grad,
    checkpoint_state,
    get_rng_state,
    plot_run,
    read_jsonl,
    restore_state,
    set_rng_state,
    train_step,
)

pytestmark = pytest.mark.ch08
PACKAGE_ROOT = Path(tt.__file__).resolve().parent.parent  # the tinytorch under test


def _model(seed=0, dropout=0.2, dtype="float32"):
    tt.manual_seed(seed)
    m = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Dropout(dropout), nn.Linear(24, 3))
    return m.double() if dtype == "float64" else m


def _data(n=64, seed=1, dtype=np.float32):
    r = np.random.default_rng(seed)
    x = r.standard_normal((n, 6)).astype(dtype)
    y = (x[:, :3].argmax(1)).astype(np.int64)
    return x, y


def _batch_fn(x, y, size=8):
    def get(i):
        ix = np.random.default_rng([11, i]).integers(0, len(x), size)
        return tt.tensor(x[ix]), tt.tensor(y[ix])

    return get


def _params(model):
    return {k: v.data.copy() for k, v in model.state_dict().items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs"


# ---- gradient accumulation ----------------------------------------------------------------
@pytest.mark.exercise("accumulation")
@pytest.mark.parametrize("sizes", [(5, 3, 8), (4, 4, 4, 4), (16,)])
def test_accumulated_gradients_equal_one_big_batch_float64(sizes):
    x, y = _data(sum(sizes), seed=3, dtype=np.float64)
    big = _model(dtype="float64", dropout=0.0)
    loss = nn.functional.cross_entropy(big(tt.tensor(x)), tt.tensor(y))
    loss.backward()
    small = _model(dtype="float64", dropout=0.0)
    cuts = np.cumsum((0,) + sizes)
    micro = [(tt.tensor(x[a:b]), tt.tensor(y[a:b])) for a, b in zip(cuts[:-1], cuts[1:])]
    mean = accumulate_grad(small, micro, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]))
    assert mean == pytest.approx(float(loss.item()), rel=1e-12)
    for p, q in zip(big.parameters(), small.parameters()):
        assert_close(q.grad, p.grad)


@pytest.mark.exercise("accumulation")
def test_accumulation_step_equals_big_batch_step():
    """train_step on MicroBatches makes the same AdamW update as on the whole batch."""
    x, y = _data(24, seed=4, dtype=np.float64)
    a, b = _model(dtype="float64", dropout=0.0), _model(dtype="float64", dropout=0.0)
    oa, ob = AdamW(a.parameters(), lr=0.1), AdamW(b.parameters(), lr=0.1)
    for _ in range(3):
        la = train_step(a, oa, (tt.tensor(x), tt.tensor(y)), clip_grad_norm=0.5)
        micro = MicroBatches(
            (tt.tensor(x[i : i + 6]), tt.tensor(y[i : i + 6])) for i in (0, 6, 12, 18)
        )
        lb = train_step(b, ob, micro, clip_grad_norm=0.5)
        assert lb == pytest.approx(la, rel=1e-12)
        assert lb.grad_norm > 0 and lb.stepped
    for p, q in zip(a.parameters(), b.parameters()):
        assert_close(q, p)


# ---- random generators --------------------------------------------------------------------
def _draws():
    return (
        backend.rng("cpu").random(5),
        np.random.rand(3),
        np.random.randn(1),  # Box-Muller keeps a cached Gaussian: part of the state
        [random.random() for _ in range(3)],
        random.gauss(0, 1),
    )


@pytest.mark.exercise("rng_capture")
def test_rng_state_round_trip_through_a_file(tmp_path):
    tt.manual_seed(int(np.random.default_rng().integers(1 << 30)))
    np.random.randn(1)  # leave a cached Gaussian in NumPy's global state
    random.gauss(0, 1)
    state = get_rng_state()
    assert set(state) >= {"tinytorch_cpu", "numpy_global", "python"}
    save({"rng": state}, tmp_path / "rng.safetensors")
    first = _draws()
    _draws()  # move every generator on
    set_rng_state(load(tmp_path / "rng.safetensors")["rng"])
    again = _draws()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.exercise("rng_capture")
def test_rng_state_restores_dropout_masks(device):
    x = tt.ones(50, 50, device=device)
    backend.rng(device)  # the device's generator exists before the capture
    state = get_rng_state()
    assert device == "cpu" or "tinytorch_cuda" in state
    m1 = to_numpy(nn.functional.dropout(x, 0.5, True))
    set_rng_state(state)
    m2 = to_numpy(nn.functional.dropout(x, 0.5, True))
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1, to_numpy(nn.functional.dropout(x, 0.5, True)))


# ---- checkpoints ------------------------------------------------------------------------
@pytest.mark.exercise("checkpoint_round_trip")
def test_checkpoint_state_round_trip(tmp_path):
    x, y = _data()
    m = _model(seed=1)
    opt = AdamW(m.parameters(), lr=1e-2)
    sched = WarmupCosineLR(opt, 3, 20)
    for i in range(4):
        train_step(m, opt, _batch_fn(x, y)(i))
        sched.step()
    state = checkpoint_state(m, opt, sched, 4, {"index": 4}, {"note": "hi"})
    assert {"model", "optimizer", "scheduler", "step", "rng", "data", "trainer"} <= set(state)
    save(state, tmp_path / "c.safetensors")
    expected_draw = backend.rng("cpu").random(4)

    m2 = _model(seed=2)
    opt2 = AdamW(m2.parameters(), lr=1e-2)
    sched2 = WarmupCosineLR(opt2, 3, 20)
    loaded = load(tmp_path / "c.safetensors")
    assert restore_state(loaded, m2, opt2, sched2) == 4
    assert loaded["data"] == {"index": 4} and loaded["trainer"] == {"note": "hi"}
    _same(_params(m), _params(m2))
    np.testing.assert_array_equal(backend.rng("cpu").random(4), expected_draw)
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    for p, q in zip(m.parameters(), m2.parameters()):
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(opt.state[p][k].data, opt2.state[q][k].data)
    # both continue identically (dropout draws from the restored generator)
    set_rng_state(loaded["rng"])
    for i in range(4, 7):
        state_now = get_rng_state()
        train_step(m, opt, _batch_fn(x, y)(i))
        set_rng_state(state_now)
        train_step(m2, opt2, _batch_fn(x, y)(i))
    _same(_params(m), _params(m2))


def _trainer(run_dir, data=None, seed=0, steps=30, **kw):
    x, y = _data(48)
    m = _model(seed)
    opt = AdamW(m.parameters(), lr=3e-2, weight_decay=0.01)
    sched = WarmupCosineLR(opt, 4, steps)
    val = [(tt.tensor(x[:16]), tt.tensor(y[:16]))]
    src = dict(batch_fn=_batch_fn(x, y)) if data is None else dict(train_data=data(x, y))
    args = dict(
        max_steps=steps,
        accumulation_steps=2,
        clip_grad_norm=1.0,
        scheduler=sched,
        val_data=val,
        eval_every=5,
        run_dir=run_dir,
        checkpoint_every=3,
        progress="off",
        tensorboard=False,
    )
    args.update(kw)
    return Trainer(m, opt, **src, **args)


def _loader(shuffle_gen):
    def make(x, y):
        ds = TensorDataset(tt.tensor(x), tt.tensor(y))
        return DataLoader(ds, batch_size=10, shuffle=True, generator=shuffle_gen())

    return make


@pytest.mark.parametrize(
    "data",
    [None, _loader(lambda: None), _loader(lambda: 5)],
    ids=["batch_fn", "loader-global-rng", "loader-own-rng"],
)
@pytest.mark.parametrize("stop", [1, 7, 10, 19])
def test_resume_is_bit_identical(tmp_path, data, stop):
    """Stop at `stop` (checkpoint there), resume in a fresh Trainer with reseeded generators:
    the final parameters equal the uninterrupted run's bit for bit (float32, dropout on, a
    shuffling loader whose epochs of 5 batches do not line up with steps of 2)."""
    ref = _trainer(tmp_path / "ref", data)
    ref.fit()
    stopper = LambdaCallback(on_step_end=lambda t, logs: setattr(t, "should_stop", t.step == stop))
    part = _trainer(tmp_path / "run", data, callbacks=[stopper])
    part.fit()
    assert part.step == stop
    tt.manual_seed(999)
    np.random.seed(1)
    resumed = _trainer(tmp_path / "run", data, seed=5)
    resumed.fit(resume=True)
    _same(_params(ref.model), _params(resumed.model))
    assert resumed.history.train_loss == ref.history.train_loss
    assert [e["val_loss"] for e in resumed.evals] == [e["val_loss"] for e in ref.evals]


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    import test_ch08_trainer as T
    from tinytorch.train import LambdaCallback
    slow = LambdaCallback(on_step_end=lambda t, logs: time.sleep(float(sys.argv[2])))
    t = T._trainer(sys.argv[1], steps=60, callbacks=[slow])
    t.fit(resume=len(sys.argv) > 3)
    np.savez(sys.argv[1] + "/final.npz", **T._params(t.model))
    """
)


def test_resume_after_kill_9_is_bit_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run), "0.05"], env=env)
    last = run / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once a few checkpoints exist
        steps = [p for p in (run / "checkpoints").glob("step_*")] if last.exists() else []
        if len(steps) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    stopped_at = int(load(last)["step"])
    assert 0 < stopped_at < 60
    done = subprocess.run(
        [sys.executable, str(script), str(run), "0", "resume"], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    ref = _trainer(tmp_path / "ref", steps=60)
    ref.fit()
    final = dict(np.load(run / "final.npz"))
    _same(_params(ref.model), final)


def test_checkpoints_last_best_and_pruning(tmp_path):
    t = _trainer(tmp_path, keep_checkpoints=2, steps=20)
    t.fit()
    ck = tmp_path / "checkpoints"
    names = sorted(p.name for p in ck.iterdir())
    assert names == ["best.safetensors", "last.safetensors"] + [
        "step_00000018.safetensors",
        "step_00000020.safetensors",
    ]
    best_step = min(t.evals, key=lambda e: e["val_loss"])["step"]
    assert int(load(ck / "best.safetensors")["step"]) == best_step
    last = load(ck / "last.safetensors")
    assert int(last["step"]) == 20
    # the final parameters under model.<state_dict key>, loadable into a fresh model
    fresh = _model(seed=3)
    fresh.load_state_dict(last["model"])
    _same(_params(t.model), _params(fresh))


# ---- early stopping ---------------------------------------------------------------------
@pytest.mark.exercise("early_stopping")
@pytest.mark.parametrize(
    "values, patience, min_delta, stop_at, best",
    [
        ([1.0, 0.9, 0.95, 0.91, 0.92, 0.5], 3, 0.0, 5, 0.9),
        ([1.0, 0.9, 0.89, 0.88, 0.87], 2, 0.05, 4, 0.9),  # gains under min_delta don't count
        ([3.0, 2.0, 1.0, 0.5], 1, 0.0, None, 0.5),
        ([1.0, 1.0], 1, 0.0, 2, 1.0),  # equal is not better
    ],
)
def test_early_stopping_update(values, patience, min_delta, stop_at, best):
    es = EarlyStopping(patience=patience, min_delta=min_delta)
    stopped = None
    for i, v in enumerate(values, 1):
        if es.update(v, step=i):
            stopped = i
            break
    assert stopped == stop_at
    assert es.best == best
    assert es.best_step == values.index(best) + 1


@pytest.mark.exercise("early_stopping")
def test_early_stopping_max_mode_and_state():
    es = EarlyStopping(monitor="acc", patience=2, mode="max")
    assert not es.update(0.5, 1) and not es.update(0.6, 2) and not es.update(0.55, 3)
    assert es.wait == 1 and es.best == 0.6
    other = EarlyStopping(monitor="acc", patience=2, mode="max")
    other.load_state_dict(es.state_dict())
    assert other.update(0.59, 4) and other.best_step == 2


def test_early_stopping_stops_the_trainer(tmp_path):
    flat = iter([1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.6])
    t = _trainer(
        tmp_path,
        steps=40,
        metrics={"score": lambda m, d: next(flat)},
        callbacks=[EarlyStopping(monitor="score", patience=3)],
    )
    t.fit()
    assert t.step == 25 and t.should_stop
    assert "score did not improve" in t.stop_reason and "step 10" in t.stop_reason
    assert int(load(tmp_path / "checkpoints" / "last.safetensors")["step"]) == 25
    again = _trainer(tmp_path, steps=40, callbacks=[EarlyStopping(monitor="score", patience=3)])
    again.fit(resume=True)  # an early-stopped run stays stopped
    assert again.step == 25 and again.stop_reason == t.stop_reason


# ---- divergence ---------------------------------------------------------------------------
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    from tinytorch.train import lm_loss

    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = lm_loss(model, batch)
        return loss * float("nan") if calls["n"] > 15 else loss  # micro-batch 16 = step 8

    t = _trainer(tmp_path, loss_fn=loss_fn, steps=30)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 8 .*step 6\)"):
        t.fit()
    assert t.step == 7
    before = _params(t.model)
    assert all(np.isfinite(v).all() for v in before.values())
    ck = load(tmp_path / "checkpoints" / "last.safetensors")
    assert int(ck["step"]) == 6


# ---- epochs, progress, logs ---------------------------------------------------------------
def test_max_epochs_counts_loader_passes(tmp_path):
    t = _trainer(None, data=_loader(lambda: 3), max_steps=None, max_epochs=3)
    t.fit()
    assert t.step == 3 * 5 // 2 and t.stream.epoch == 2  # 5 batches per epoch, 2 per step


def test_progress_lines_bar_and_silence():
    buf = io.StringIO()
    p = Progress(10, mode="auto", every=5, file=buf)  # a StringIO is not a terminal
    assert p.mode == "lines"
    p.eval({"val_loss": 1.5})
    for s in range(1, 11):
        p.update(s, 2.0, 1e-3)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and "step     10/10" in lines[1] and "val_loss 1.5000" in lines[1]
    assert "ETA" in lines[0] and "lr 1.00e-03" in lines[0]
    buf = io.StringIO()
    bar = Progress(10, mode="bar", file=buf)
    for s in range(1, 11):
        bar.update(s, 2.0, 1e-3)
    bar.close()
    assert "10/10" in buf.getvalue()
    buf = io.StringIO()
    off = Progress(10, mode="off", file=buf)
    off.update(10, 1.0, 1.0)
    off.write("x")
    assert buf.getvalue() == ""


def _read_events(folder: Path) -> dict:
    """TensorBoard event files read back with the record format itself: each record is a
    uint64 length, its masked CRC, the bytes (an Event protobuf), their masked CRC."""
    from tensorboardX.proto import event_pb2

    out: dict = {}
    for f in sorted(folder.glob("events.out.tfevents.*")):
        data = f.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            ev = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, {})[ev.step] = v.simple_value
    return out


def test_jsonl_and_tensorboard_hold_every_scalar(tmp_path):
    pytest.importorskip("tensorboardX")
    t = _trainer(tmp_path, steps=10, tensorboard=True)
    t.fit()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 11))
    for r in rows:
        assert {"train/loss", "train/lr", "train/grad_norm", "train/step_ms"} <= set(r)
    assert rows[4]["val/val_loss"] == pytest.approx(t.evals[0]["val_loss"])
    assert [r["train/loss"] for r in rows] == pytest.approx(t.history.train_loss)
    events = _read_events(tmp_path / "tb")
    assert sorted(events["train/loss"]) == list(range(1, 11))
    assert [events["train/loss"][s] for s in range(1, 11)] == pytest.approx(
        t.history.train_loss, rel=1e-6
    )
    assert events["val/val_loss"][10] == pytest.approx(t.evals[-1]["val_loss"], rel=1e-6)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_plot_run_draws_the_logged_curves(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    t = _trainer(tmp_path, steps=10)
    t.fit()
    path = plot_run(tmp_path)
    img = plt.imread(path)
    assert path == tmp_path / "curves.png" and img.shape[1] > img.shape[0] > 100
    assert img.std() > 0.01  # not a blank canvas


def test_train_step_plain_batch_is_unchanged():
    x, y = _data(16)
    m = _model(dropout=0.0)
    opt = SGD(m.parameters(), lr=0.1)
    loss = train_step(m, opt, (tt.tensor(x), tt.tensor(y)))
    assert type(loss) is float and np.isfinite(loss)


def test_missing_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    from tinytorch.train import RunLogger

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"tinytorch\[log\]"):
        RunLogger(tmp_path, tensorboard=True)
    logger = RunLogger(tmp_path, tensorboard=None)  # optional: JSONL only
    assert logger.tb is None
    logger.close()
