"""tinytorch.data: dataset location and checked downloads, DataLoader, splits, padding.

Downloads are tested against a throwaway HTTP server on 127.0.0.1 (never the internet): a
good file lands in the cache, a file with the wrong sha256 is refused and leaves nothing
behind, a missing one gives an error that says where to put it.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import to_numpy

import tinytorch as tt
from tinytorch import data
from tinytorch.data import datasets as ds_mod

pytestmark = pytest.mark.ch03


# ---- dataset location and download ---------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/mirror on 127.0.0.1 (a free port) for one test; yields (url, root, log)."""
    root = tmp_path / "mirror"
    root.mkdir()
    log = []

    class Handler(_Handler):
        def do_GET(self):
            log.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopper = threading.Timer(60, httpd.shutdown)  # bounded even if a test hangs
    stopper.daemon = True
    stopper.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, log
    finally:
        stopper.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data folder, an empty cache under tmp_path, no mirror URL."""
    monkeypatch.delenv("TINYTORCH_DATA_DIR", raising=False)
    monkeypatch.delenv("TINYTORCH_DATA_URL", raising=False)
    monkeypatch.setenv("TINYTORCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


REFERENCE_DIR = Path(os.environ["TINYTORCH_DATA_DIR"])  # set by conftest; read before isolating


def _reference_copy(name) -> Path:
    return REFERENCE_DIR / ds_mod.REGISTRY[name].relpath


def test_data_dir_is_found_and_checked():
    for name in ("names", "tinyshakespeare"):
        p = data.dataset_path(name, download=False)
        assert p.is_file() and data.sha256_of(p) == ds_mod.REGISTRY[name].sha256
    with pytest.raises(KeyError, match="known datasets: .*names"):
        data.dataset_path("no-such-data")


def test_download_lands_in_cache_checked(server, isolated, monkeypatch):
    url, root, log = server
    entry = ds_mod.REGISTRY["names"]
    src = _reference_copy("names")
    (root / entry.relpath).parent.mkdir(parents=True)
    shutil.copy(src, root / entry.relpath)
    monkeypatch.setenv("TINYTORCH_DATA_URL", url)
    p = data.dataset_path("names")
    assert p == isolated / entry.relpath
    assert p.read_bytes() == src.read_bytes()
    assert log == ["/" + entry.relpath]
    assert data.dataset_path("names") == p and len(log) == 1  # the cache answers next time
    assert [f.name for f in p.parent.iterdir()] == ["names.txt"]  # no temporary files left


def test_checksum_mismatch_is_refused_and_nothing_is_kept(server, isolated):
    url, root, log = server
    entry = ds_mod.REGISTRY["names"]
    (root / entry.relpath).parent.mkdir(parents=True)
    good = _reference_copy("names").read_bytes()
    (root / entry.relpath).write_bytes(good.replace(b"emma", b"anna", 1))  # one name changed
    with pytest.raises(data.ChecksumError, match=f"sha256.*expected {entry.sha256}"):
        data.dataset_path("names", base_url=url)
    assert log  # the server was asked
    leftovers = [p for p in isolated.rglob("*") if p.is_file()] if isolated.exists() else []
    assert leftovers == []


def test_missing_everywhere_gives_a_clear_error(server, isolated):
    url, _, log = server
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.dataset_path("tinyshakespeare", base_url=url)  # the mirror answers 404
    msg = str(err.value)
    for part in ("tinyshakespeare/input.txt", "TINYTORCH_DATA_DIR", str(isolated), "404"):
        assert part in msg
    with pytest.raises(data.DatasetNotFoundError, match="download=False"):
        data.dataset_path("tinyshakespeare", download=False)


def test_damaged_file_in_data_dir_is_reported(tmp_path, monkeypatch):
    entry = ds_mod.REGISTRY["sst2-dev"]
    bad = tmp_path / entry.relpath
    bad.parent.mkdir(parents=True)
    bad.write_text("0 not the real file\n")
    monkeypatch.setenv("TINYTORCH_DATA_DIR", str(tmp_path))
    with pytest.raises(data.ChecksumError, match=str(bad)):
        data.dataset_path("sst2-dev", download=False)
    assert data.dataset_path("sst2-dev", verify=False) == bad


def test_canonical_zip_source_is_cut_like_the_reference(server, isolated):
    """eng-fra's canonical source is a zip whose fra.txt is longer: the download keeps the
    first 20,000 lines and must then match the reference checksum."""
    url, root, _ = server
    lines = _reference_copy("eng-fra").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fra.txt", lines + b"Extra line.\tLigne en plus.\n" * 5)
        z.writestr("_about.txt", b"about")
    (root / "fra-eng.zip").write_bytes(buf.getvalue())
    entry = ds_mod.REGISTRY["eng-fra"]
    dest = isolated / entry.relpath
    p = ds_mod._download(entry, f"{url}/fra-eng.zip", dest, timeout=10, raw=False)
    assert hashlib.sha256(p.read_bytes()).hexdigest() == entry.sha256
    assert entry.url.startswith("https://raw.githubusercontent.com/genimind/seq2seq/")


# ---- DataLoader ------------------------------------------------------------------------------
def _epochs(loader, n):
    return [[to_numpy(b[0]).tolist() for b in loader] for _ in range(n)]


@pytest.mark.exercise("batch_indices")
@pytest.mark.parametrize("n,bs", [(23, 5), (20, 5), (3, 8)])
def test_dataloader_covers_each_example_once(n, bs):
    ds = data.TensorDataset(tt.arange(n), tt.randn(n, 3))
    for drop_last in (False, True):
        loader = data.DataLoader(ds, batch_size=bs, shuffle=True, drop_last=drop_last)
        batches = [(to_numpy(x), to_numpy(y)) for x, y in loader]
        assert len(batches) == len(loader) == (n // bs if drop_last else -(-n // bs))
        seen = np.concatenate([x for x, _ in batches]) if batches else np.array([])
        sizes = [len(x) for x, _ in batches]
        if drop_last:
            assert all(s == bs for s in sizes) and len(seen) == n - n % bs
        else:
            assert sorted(seen.tolist()) == list(range(n))
            assert sizes[:-1] == [bs] * (len(sizes) - 1) and sizes[-1] == (n % bs or bs)
        assert len(set(seen.tolist())) == len(seen)  # never twice in an epoch
        for x, y in batches:  # the fields stay aligned
            np.testing.assert_array_equal(y, to_numpy(ds.tensors[1])[x])


@pytest.mark.exercise("batch_indices")
def test_dataloader_is_deterministic_with_a_seed():
    ds = data.TensorDataset(tt.arange(50))
    a = _epochs(data.DataLoader(ds, batch_size=7, shuffle=True, generator=123), 3)
    b = _epochs(
        data.DataLoader(ds, batch_size=7, shuffle=True, generator=np.random.default_rng(123)), 3
    )
    c = _epochs(data.DataLoader(ds, batch_size=7, shuffle=True, generator=124), 3)
    assert a == b and a != c
    assert a[0] != a[1]  # a new order every epoch
    tt.manual_seed(5)
    d = _epochs(data.DataLoader(ds, batch_size=7, shuffle=True), 2)
    tt.manual_seed(5)
    assert d == _epochs(data.DataLoader(ds, batch_size=7, shuffle=True), 2)
    flat = _epochs(data.DataLoader(ds, batch_size=7), 1)[0]
    assert sum(flat, []) == list(range(50))  # no shuffle: in order


def test_default_collate_and_custom_datasets():
    class Pairs(data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return {"x": np.full(3, float(i)), "label": i % 2, "w": 0.5 * i, "name": f"n{i}"}

    (batch,) = list(data.DataLoader(Pairs(), batch_size=5))
    assert batch["x"].shape == (5, 3) and batch["x"].dtype == np.float64
    assert batch["label"].dtype == np.int64 and to_numpy(batch["label"]).tolist() == [0, 1, 0, 1, 0]
    assert batch["w"].dtype == np.float64
    assert batch["name"] == ["n0", "n1", "n2", "n3", "n4"]
    got = list(data.DataLoader(Pairs(), batch_size=2, collate_fn=lambda b: len(b)))
    assert got == [2, 2, 1]
    with pytest.raises(ValueError, match="batch_size"):
        data.DataLoader(Pairs(), batch_size=0)


def test_padding_collate_matches_torch_pad_sequence():
    seqs = [np.random.randint(1, 9, size=k) for k in (3, 1, 5, 4)]
    for batch_first in (True, False):
        for side in ("right", "left"):
            ours = data.pad_sequence([tt.tensor(s) for s in seqs], batch_first, -1, side)
            ref = torch.nn.utils.rnn.pad_sequence(
                [torch.tensor(s) for s in seqs], batch_first, -1, side
            )
            np.testing.assert_array_equal(to_numpy(ours), ref.numpy())
    labels = [1, 0, 1, 1]
    collate = data.PadCollate(padding_value=0, return_lengths=True)
    loader = data.DataLoader(
        list(zip([s.tolist() for s in seqs], labels)), batch_size=4, collate_fn=collate
    )
    (((padded, lengths), y),) = list(loader)
    assert padded.shape == (4, 5) and padded.dtype == np.int64
    assert to_numpy(lengths).tolist() == [3, 1, 5, 4] and to_numpy(y).tolist() == labels
    for row, s in zip(to_numpy(padded), seqs):
        assert row[: len(s)].tolist() == s.tolist() and not row[len(s) :].any()


def test_random_split_like_torch():
    for n in (10, 101, 32032):
        parts = data.random_split(range(n), [0.8, 0.1, 0.1], generator=0)
        ref = torch.utils.data.random_split(range(n), [0.8, 0.1, 0.1])
        assert [len(p) for p in parts] == [len(r) for r in ref]
        everything = sorted(i for p in parts for i in p.indices)
        assert everything == list(range(n))
    a = data.random_split(range(30), [20, 10], generator=1)
    b = data.random_split(range(30), [20, 10], generator=1)
    assert a[0].indices == b[0].indices
    assert [a[0][i] for i in range(3)] == a[0].indices[:3]  # Subset reads through
    with pytest.raises(ValueError, match="sum to"):
        data.random_split(range(30), [20, 11])
