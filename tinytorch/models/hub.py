"""Finding a Hugging Face model folder: a path, the tinytorch cache, or the hub (chapter 09).

    resolve("gpt2") -> Path of a folder holding config.json and model.safetensors

Order: a folder on disk; `<tinytorch cache>/pretrained/<name>/` (put files there by hand to
work offline); a download from the Hugging Face hub into its cache (huggingface_hub, the
`pretrained` extra), checked: the hub cache names each file by its hash and the bytes must
have that hash. Otherwise the error says which files to put in which folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

__all__ = ["FILES", "HUB_NAMES", "pretrained_cache", "resolve", "read_folder"]

FILES = ("config.json", "model.safetensors")
# short names -> hub repositories (the hub redirects the old names, but say where they live)
HUB_NAMES = {
    "gpt2": "openai-community/gpt2",
    "bert-base-uncased": "google-bert/bert-base-uncased",
}


def pretrained_cache() -> Path:
    """`<$TINYTORCH_CACHE or ~/.cache/tinytorch>/pretrained`: put a model folder here by hand
    (e.g. pretrained/gpt2/config.json) to use it by name without the network."""
    from ..data.datasets import cache_dir

    return cache_dir().parent / "pretrained"


def _has_files(folder: Path) -> bool:
    return all((folder / f).is_file() for f in FILES)


def _verify(path: Path) -> None:
    """The hub cache names each file's blob by its hash: sha256 for large (LFS) files, the git
    blob sha1 for small ones. The bytes must match the name, or the download is damaged."""
    blob = Path(os.path.realpath(path)).name
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", blob):
        return  # a cache without hash-named blobs (e.g. copied files): nothing to check against
    if len(blob) == 64:
        h = hashlib.sha256()
    else:  # git hashes a header, then the bytes
        h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):  # 548 MB for GPT-2: not all at once
            h.update(chunk)
    got = h.hexdigest()
    if got != blob:
        raise OSError(
            f"{path}: the downloaded file is damaged (its hash is {got}, the hub's is {blob}); "
            "delete it and download again"
        )


def _missing_message(name: str, why: str) -> str:
    repo = HUB_NAMES.get(name, name)
    return (
        f"cannot load the pretrained model {name!r}: {why}. Download "
        f"{' and '.join(FILES)} from https://huggingface.co/{repo}/tree/main and put them in "
        f"{pretrained_cache() / name}/ (or any folder, and pass its path)"
    )


def resolve(path_or_name) -> Path:
    """The folder holding config.json and model.safetensors for a path or a hub name."""
    p = Path(path_or_name).expanduser()
    if p.is_dir():
        missing = [f for f in FILES if not (p / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{p} is not a Hugging Face model folder: it has no {', '.join(missing)} "
                "(tinytorch reads config.json and model.safetensors, never pytorch_model.bin)"
            )
        return p
    name = str(path_or_name)
    if p.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{name}: not a folder (expected a model folder or a hub name)")
    local = pretrained_cache() / name
    if _has_files(local):
        return local
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise FileNotFoundError(
            _missing_message(
                name, "huggingface_hub is not installed (pip install 'tinytorch[pretrained]')"
            )
        ) from None
    try:
        paths = [Path(hf_hub_download(HUB_NAMES.get(name, name), f)) for f in FILES]
    except Exception as e:  # noqa: BLE001 - offline, unknown repository, no such file...
        raise FileNotFoundError(_missing_message(name, f"the download failed ({e})")) from None
    for path in paths:
        _verify(path)
    return paths[0].parent


def read_folder(folder) -> tuple[dict, dict]:
    """(config dict, {name: NumPy array}) from a model folder's two files."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config, load_file(folder / "model.safetensors")
