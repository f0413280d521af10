"""Chapter 08: tinytorch.save / tinytorch.load (safetensors, atomic, checked on load).

The PyTorch twins are chapter 07's GPT (tests/test_ch07_gpt.py) and torch.nn.LSTM; files go
both ways through `safetensors.torch`.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from helpers import assert_close, to_numpy
from test_ch07_gpt import TorchGPT

import tinytorch as tt
from tinytorch import nn
from tinytorch.models import GPT, GPTConfig
from tinytorch.serialization import CheckpointError, load, save

pytestmark = pytest.mark.ch08

ROOT = Path(__file__).resolve().parent.parent


def _gpt_pair():
    config = GPTConfig(block_size=12, vocab_size=17, n_layer=2, n_head=2, n_embd=8, bias=True)
    ref = TorchGPT(config)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.3)
    return config, GPT(config), ref


def _same(a, b, path="obj"):
    """Exact equality of two saved/loaded structures (types, dtypes, shapes, bits)."""
    if isinstance(a, tt.Tensor | np.ndarray):
        assert isinstance(b, tt.Tensor), path
        a_np = to_numpy(a)
        assert b.dtype == a_np.dtype and b.shape == a_np.shape, path
        np.testing.assert_array_equal(to_numpy(b), a_np, err_msg=path)
    elif isinstance(a, dict):
        assert type(b) is dict and list(b) == list(a), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(b) is type(a) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert isinstance(b, float) and np.isnan(b), path
    else:
        assert type(b) is type(a) and b == a, path


def test_nested_structure_round_trips_exactly(tmp_path, device):
    rng = np.random.default_rng()
    obj = {
        "model": {"w": tt.randn(3, 4, device=device), "b": tt.zeros(4, dtype=tt.float64)},
        "ints": rng.integers(-(2**62), 2**62, (2, 3)),  # int64 survives bit for bit
        "mask": rng.random((5,)) > 0.5,
        "half": rng.standard_normal((2, 2)).astype(np.float16),
        "bytes": rng.integers(0, 255, (7,), dtype=np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),  # 0-d stays 0-d
        "empty": np.zeros((0, 3), dtype=np.float32),
        "view": rng.standard_normal((4, 6))[:, ::2],  # non-contiguous input
        "state": {0: {"step": 7, "m": rng.standard_normal(3)}, 1: {"step": 2**70}},
        "__dunder": [1, "two", None, True, 3.5, float("inf"), float("nan")],
        "betas": (0.9, 0.999),
        "rng": ("MT19937", rng.integers(0, 2**32, 624, dtype=np.uint32), 3, 0, 0.0),
        "a.b": tt.ones(2),
        "a": {"b": tt.zeros(2)},  # flattens to the same name as "a.b": both kept
        "npscalar": np.float64(0.25),
    }
    path = tmp_path / "ckpt.safetensors"
    save(obj, path)
    back = load(path, map_location=device)
    expected = dict(obj, npscalar=0.25)
    _same(expected, back)
    assert all(t.device == device for t in (back["ints"], back["model"]["w"]))
    assert not back["model"]["w"].requires_grad


def test_state_dict_keys_are_the_file_names_and_load_into_the_torch_twin(tmp_path):
    config, ours, ref = _gpt_pair()
    ours.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for p in ours.parameters():
            p.data += np.float32(np.random.default_rng().standard_normal(p.shape) * 0.1)
    path = tmp_path / "gpt.safetensors"
    save(ours.state_dict(), path)
    theirs = safetensors.torch.load_file(path)
    assert set(theirs) == set(ours.state_dict())
    fresh = TorchGPT(config)
    fresh.load_state_dict(theirs)  # strict: exactly the twin's keys
    idx = np.random.default_rng().integers(0, config.vocab_size, (2, 9))
    logits, _ = ours(tt.tensor(idx), tt.tensor(idx))
    ref_logits, _ = fresh(torch.tensor(idx), torch.tensor(idx))
    assert_close(logits, ref_logits)


def test_a_torch_safetensors_file_loads_into_tinytorch(tmp_path):
    config, ours, ref = _gpt_pair()
    path = tmp_path / "torch.safetensors"
    # safetensors.torch refuses tensors that share memory (the tied wte/lm_head): copy them
    safetensors.torch.save_file({k: v.clone() for k, v in ref.state_dict().items()}, path)
    loaded = load(path)
    assert all(isinstance(v, tt.Tensor) for v in loaded.values())
    ours.load_state_dict(loaded)
    idx = np.random.default_rng().integers(0, config.vocab_size, (2, 9))
    logits, _ = ours(tt.tensor(idx), tt.tensor(idx))
    ref_logits, _ = ref(torch.tensor(idx), torch.tensor(idx))
    assert_close(logits, ref_logits)


def test_lstm_round_trips_with_torch(tmp_path):
    ours = nn.LSTM(5, 7, num_layers=2, batch_first=True)
    ref = torch.nn.LSTM(5, 7, num_layers=2, batch_first=True)
    save(ours.state_dict(), tmp_path / "lstm.safetensors")
    ref.load_state_dict(safetensors.torch.load_file(tmp_path / "lstm.safetensors"))
    x = np.random.default_rng().standard_normal((3, 4, 5)).astype(np.float32)
    assert_close(ours(tt.tensor(x))[0], ref(torch.tensor(x))[0])
    with torch.no_grad():
        for p in ref.parameters():
            p.uniform_(-0.5, 0.5)
    safetensors.torch.save_file(ref.state_dict(), tmp_path / "back.safetensors")
    ours.load_state_dict(load(tmp_path / "back.safetensors"))
    assert_close(ours(tt.tensor(x))[0], ref(torch.tensor(x))[0])


def _train(model, opt, sched, steps, rng):
    for _ in range(steps):
        idx = tt.tensor(rng.integers(0, model.config.vocab_size, (2, 6)))
        _, loss = model(idx, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", ["AdamW", "Adam-amsgrad", "SGD"])
def test_optimizer_and_scheduler_state_round_trip(tmp_path, kind):
    """Save mid-run, load into fresh objects, continue: the same parameters bit for bit."""

    def make():
        model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
        params = list(model.parameters())
        groups = [{"params": params[:3], "weight_decay": 0.1}, {"params": params[3:]}]
        if kind == "AdamW":
            opt = tt.optim.AdamW(groups, lr=1e-2, weight_decay=0.0)
        elif kind == "Adam-amsgrad":
            opt = tt.optim.Adam(groups, lr=1e-2, amsgrad=True)
        else:
            opt = tt.optim.SGD(groups, lr=1e-2, momentum=0.9, nesterov=True)
        sched = tt.optim.lr_scheduler.WarmupCosineLR(opt, 3, 20, 0.1)
        return model, opt, sched

    model, opt, sched = make()
    _train(model, opt, sched, 4, np.random.default_rng(1))
    path = tmp_path / "ckpt.safetensors"
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 4}
    ckpt["scheduler"] = sched.state_dict()
    save(ckpt, path)
    _train(model, opt, sched, 3, np.random.default_rng(2))

    model2, opt2, sched2 = make()
    back = load(path)
    model2.load_state_dict(back["model"])
    opt2.load_state_dict(back["optimizer"])
    sched2.load_state_dict(back["scheduler"])
    assert back["step"] == 4
    saved_state = back["optimizer"]["state"]
    assert sorted(saved_state) == list(range(len(saved_state)))  # int keys, as PyTorch
    if kind != "SGD":
        assert all(type(s["step"]) is int and s["step"] == 4 for s in saved_state.values())
        assert opt2.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    _train(model2, opt2, sched2, 3, np.random.default_rng(2))
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        np.testing.assert_array_equal(to_numpy(b), to_numpy(a), err_msg=name)
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_foreign_safetensors_file_loads_as_a_flat_dict(tmp_path):
    from safetensors.numpy import save_file

    arrays = {"x.y": np.arange(6, dtype=np.int32).reshape(2, 3), "z": np.ones(2, np.float16)}
    save_file(arrays, tmp_path / "f.safetensors")
    back = load(tmp_path / "f.safetensors")
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(to_numpy(back[k]), v)


def test_unsupported_values_are_refused_and_leave_nothing(tmp_path):
    path = tmp_path / "bad.safetensors"
    with pytest.raises(TypeError, match=r"'opt.fn'.*function"):
        save({"opt": {"fn": lambda x: x}}, path)
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        save({(1, 2): 3}, path)
    with pytest.raises(TypeError, match="complex"):
        save({"c": np.zeros(2, np.complex64)}, path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="the folder .* does not exist"):
        save({"a": 1}, tmp_path / "no" / "such.safetensors")


def test_a_failure_during_the_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.numpy

    path = tmp_path / "ckpt.safetensors"
    save({"v": np.arange(4)}, path)

    def crash(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save({"v": np.arange(8)}, path)
    np.testing.assert_array_equal(to_numpy(load(path)["v"]), np.arange(4))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # temp removed


_WRITER = """
import sys
import numpy as np
from tinytorch.serialization import save
path = sys.argv[1]
big = np.random.default_rng().standard_normal((4_000_000,)).astype(np.float32)
print("ready", flush=True)
v = 1
while True:
    big[:] = v
    save({"version": v, "big": big, "tail": np.full(3, v)}, path)
    v += 1
"""


def test_killing_the_writer_mid_save_leaves_a_loadable_file(tmp_path):
    """SIGKILL a process that saves a 16 MB dict in a loop, at random moments: the file is
    always one complete version, and the writer's leftover temp files are never it."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs POSIX signals")
    path = tmp_path / "ckpt.safetensors"
    save({"version": 0, "big": np.zeros(4_000_000, np.float32), "tail": np.zeros(3)}, path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    seen = set()
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        back = load(path)
        v = back["version"]
        seen.add(v)
        assert np.all(to_numpy(back["big"]) == v) and np.all(to_numpy(back["tail"]) == v)
        assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [path.name]
        for tmp in tmp_path.glob(".*.tmp"):  # a leftover temp is never a valid checkpoint name
            assert tmp.name.startswith(f".{path.name}.")
    assert seen  # the file loaded after every kill


def _bad_files(tmp_path):
    """(name, bytes) of files that must not load, from a valid one."""
    good = tmp_path / "good.safetensors"
    save({"w": np.arange(1000, dtype=np.float32), "meta": {"step": 3}}, good)
    data = good.read_bytes()
    n = int.from_bytes(data[:8], "little")
    rng = np.random.default_rng()
    flipped = bytearray(data)
    flipped[8 + n + int(rng.integers(0, len(data) - 8 - n))] ^= 0x10  # one bit of the weights
    header_flip = bytearray(data)
    header_flip[8] = ord("#")  # the header's opening brace (a random byte of it could fall in a
    # key's name and leave valid JSON: that once made this test fail)
    buf = tmp_path / "t.pt"
    torch.save({"w": torch.zeros(3)}, buf)
    return [
        ("empty", b""),
        ("short", data[:5]),
        ("cut in header", data[: 8 + int(rng.integers(0, n))]),
        ("cut in data", data[: int(rng.integers(8 + n, len(data)))]),
        ("trailing bytes", data + b"\0" * 16),
        ("bit flip in data", bytes(flipped)),
        ("header not json", bytes(header_flip)),
        ("torch.save zip", buf.read_bytes()),
        ("pickle", pickle.dumps({"w": [1, 2, 3]}, protocol=4)),
        ("text", b"these are not weights at all, just a line of text\n"),
        ("random", rng.integers(0, 256, 300, dtype=np.uint8).tobytes()),
    ]


def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path):
    for name, blob in _bad_files(tmp_path):
        path = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(CheckpointError) as info:
            load(path)
        assert str(path) in str(info.value), name
        # no chained NumPy/safetensors traceback underneath
        assert info.value.__suppress_context__ or info.value.__context__ is None, name
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load(tmp_path / "missing.safetensors")


def test_specific_messages_say_what_is_wrong(tmp_path):
    files = dict(_bad_files(tmp_path))
    expect = {
        "empty": "empty",
        "cut in data": "truncated",
        "bit flip in data": "checksum",
        "torch.save zip": "torch.save",
        "pickle": "pickle",
    }
    for name, words in expect.items():
        path = tmp_path / "x.safetensors"
        path.write_bytes(files[name])
        with pytest.raises(CheckpointError, match=words):
            load(path)


def test_a_bad_file_never_half_loads_a_model(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    before = {k: to_numpy(v).copy() for k, v in model.state_dict().items()}
    path = tmp_path / "m.safetensors"
    save({k: v * 2 for k, v in model.state_dict().items()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3])
    with pytest.raises(CheckpointError):
        model.load_state_dict(load(path))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(to_numpy(v), before[k])


def test_a_header_length_that_looks_like_a_pickle_opcode_still_loads(tmp_path):
    """A 640-byte header is 80 02 00.. in the length field, the bytes that open a pickle."""
    path = tmp_path / "c.safetensors"
    for k in range(700):
        save({"w": np.arange(3), "note": "x" * k}, path)
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    else:
        pytest.fail("no string length gave a 640-byte header")
    assert load(path)["note"] == "x" * k
