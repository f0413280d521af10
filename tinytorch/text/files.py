"""Tokenizer files: written atomically, checked on load (chapter 02).

A tokenizer file is one JSON object with a "format" tag, a "version", the tokenizer's content
and a "sha256" of that content. Writing goes to a temporary file in the same folder that is
then renamed over the target (`os.replace` is atomic), so a crash never leaves half a file;
loading refuses a truncated, corrupted or foreign file with a message that says which.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def _digest(payload: dict) -> str:
    body = json.dumps(payload, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); use the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_checked_json(path, payload: dict) -> None:
    """Save `payload` (which has "format" and "version") with a sha256 of its content."""
    atomic_write_text(path, json.dumps({**payload, "sha256": _digest(payload)}, ensure_ascii=True))


def read_checked_json(path, fmt: str, versions=(1,)) -> dict:
    """Load a file written by `write_checked_json`; check its format tag, version and checksum."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"tokenizer file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"tokenizer file {path} is corrupted (not UTF-8 text: {e})") from None
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"tokenizer file {path} is truncated or corrupted (not valid JSON: {e})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a {fmt} file (format: {got!r})")
    if payload.get("version") not in versions:
        raise ValueError(
            f"{path}: {fmt} version {payload.get('version')!r} is not supported "
            f"(this tinytorch reads versions {list(versions)})"
        )
    digest = payload.pop("sha256", None)
    if digest != _digest(payload):
        raise ValueError(
            f"tokenizer file {path} is corrupted: its checksum does not match its content"
        )
    return payload
