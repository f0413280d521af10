"""`tinytorch.save` / `tinytorch.load`: checkpoints as safetensors, never pickle.

A safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's
dtype, shape and byte range, plus a string->string "__metadata__" map), then the raw tensor
bytes. Loading one parses JSON and copies bytes: it cannot run code, unlike torch.save's
pickles.

    save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 100}, path)
    ckpt = load(path)                      # same structure, arrays as Tensors

What goes where:
- every array (Tensor, Parameter, NumPy/CuPy array, torch tensor) is a safetensors tensor,
  named by its path in the object, joined with dots: "model.transformer.h.0.attn.c_attn.weight",
  "optimizer.state.0.exp_avg". A plain state_dict therefore keeps exactly its keys, so
  `safetensors.torch.load_file(path)` loads it into the PyTorch twin and back.
- everything else (dicts with str or int keys, lists, tuples, numbers, strings, bools, None)
  is JSON in the metadata under "tinytorch", with each array replaced by {"__tensor__": name},
  so load() rebuilds the exact structure. The same JSON holds a CRC-32 of every tensor's
  bytes: a file damaged after it was written fails with CheckpointError instead of loading
  wrong weights.

Writing is atomic (temp file in the same folder, fsync, os.replace, fsync of the folder): a
crash mid-save leaves the previous file as it was. Temp files are named ".NAME.*.tmp".
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

from . import backend
from .tensor import Tensor

__all__ = ["CheckpointError", "save", "load"]

META_KEY = "tinytorch"  # our JSON in the safetensors "__metadata__" map
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_SPECIAL = ("__tensor__", "__tuple__", "__dict__", "__float__")


class CheckpointError(ValueError):
    """A file that tinytorch.load cannot read as a tinytorch/safetensors checkpoint."""


# ---- saving -----------------------------------------------------------------------------
def _as_array(obj):
    """A C-contiguous NumPy array for a Tensor / NumPy / CuPy array / torch tensor, else None."""
    if isinstance(obj, Tensor):
        obj = obj.data
    elif hasattr(obj, "detach") and hasattr(obj, "cpu") and hasattr(obj, "numpy"):  # torch
        obj = obj.detach().cpu().numpy()
    if backend.is_cupy(obj):
        obj = backend.to_device(obj, "cpu")
    if not isinstance(obj, np.ndarray):
        return None
    # safetensors reads raw memory from the array's pointer: it must be dense (and not
    # np.ascontiguousarray, which turns 0-d arrays into 1-d ones)
    return obj if obj.flags.c_contiguous else obj.copy(order="C")


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def _encode(obj, path: str, tensors: dict):
    """The JSON skeleton of obj; arrays go into `tensors` under their dotted path."""
    arr = _as_array(obj)
    if arr is not None:
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"cannot save {path or 'the object'!r}: arrays of dtype {arr.dtype} are not "
                "supported (safetensors holds bool, integer and floating arrays)"
            )
        name, n = path or "tensor", 1
        while name in tensors:  # {"a.b": x, "a": {"b": y}} flatten to the same name
            n += 1
            name = f"{path or 'tensor'}#{n}"
        tensors[name] = arr
        return {"__tensor__": name}
    if isinstance(obj, np.generic):  # a NumPy scalar: keep its value as a Python number
        obj = obj.item()
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}  # JSON has no nan/inf
    if isinstance(obj, list):
        return [_encode(v, _join(path, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, _join(path, i), tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, dict):
        for k in obj:
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise TypeError(
                    f"cannot save {path or 'the object'!r}: dict keys must be str or int, "
                    f"got {k!r} ({type(k).__name__})"
                )
        items = [(k, _encode(v, _join(path, k), tensors)) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return dict(items)  # the readable form; "__" keys would look like our markers
        return {"__dict__": [[k, v] for k, v in items]}
    raise TypeError(
        f"cannot save {path or 'the object'!r} of type {type(obj).__name__}: tinytorch.save "
        "stores Tensors and arrays, numbers, strings, bools, None, and lists, tuples and "
        "dicts of them (no pickle)"
    )


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open folders)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(obj, path) -> None:
    """Write obj (a state_dict, or nested dicts/lists/tuples of Tensors, arrays, numbers,
    strings, bools and None) to `path` as safetensors, atomically."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors: dict = {}
    skeleton = _encode(obj, "", tensors)
    crc = {name: zlib.crc32(arr.reshape(-1).view(np.uint8)) for name, arr in tensors.items()}
    meta = {"version": FORMAT_VERSION, "structure": skeleton, "crc32": crc}
    # "format": "pt" is what Hugging Face's loaders look for in a PyTorch weights file
    metadata = {"format": "pt", META_KEY: json.dumps(meta, allow_nan=False)}
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save {path}: the folder {folder} does not exist")
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # O_EXCL: never reuse someone else's temp file; mode 0o666 lets the umask decide, as open()
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        save_file(tensors, tmp, metadata=metadata)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the bytes are on disk before the name points at them
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


# ---- loading ----------------------------------------------------------------------------
def _not_safetensors(path: Path, head: bytes, size: int, n):
    """Raise the CheckpointError that best says what this non-safetensors file is."""
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(
            f"{path}: this is a zip archive (torch.save's format), not a safetensors file; "
            "tinytorch.load reads safetensors only and never unpickles"
        )
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(
            f"{path}: this is a Python pickle, not a safetensors file; tinytorch.load "
            "never unpickles (loading a pickle can run code)"
        )
    if n is None:
        raise CheckpointError(
            f"{path}: the file has {size} bytes, too short for a safetensors header (truncated?)"
        )
    if n > _MAX_HEADER:
        raise CheckpointError(
            f"{path}: not a safetensors file (its first 8 bytes give a header length of {n} bytes)"
        )
    if 8 + n > size:
        raise CheckpointError(
            f"{path}: truncated: the header should be {n} bytes but the file has only "
            f"{size - 8} after the length field"
        )
    raise CheckpointError(f"{path}: not a safetensors file: its header does not start with '{{'")


def _read_header(path: Path) -> dict:
    """Check the framing of a safetensors file; return its JSON header or raise
    CheckpointError saying what is wrong."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a safetensors file")
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if size >= 8 else None
        if n is None or n > _MAX_HEADER or 8 + n > size:
            # the framing is wrong; only now guess what the file is (a valid header length
            # such as 640 = 0x280 starts with the same bytes as a pickle)
            _not_safetensors(path, head, size, n)
        raw = f.read(n)
    if not raw.startswith(b"{"):
        _not_safetensors(path, head, size, n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a safetensors file or a corrupted one: its header is not JSON ({e})"
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupted: the safetensors header is not a JSON object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise CheckpointError(
                f"{path}: corrupted: tensor {name!r} has no valid data_offsets in the header"
            ) from None
    if 8 + n + end > size:
        raise CheckpointError(
            f"{path}: truncated: the tensors end at byte {8 + n + end} but the file has "
            f"{size} bytes (an interrupted copy or write?)"
        )
    if 8 + n + end < size:
        raise CheckpointError(
            f"{path}: corrupted: {size - 8 - n - end} unexpected bytes after the last tensor"
        )
    return header


def _decode(node, tensors: dict, path: Path, used: set):
    if isinstance(node, list):
        return [_decode(v, tensors, path, used) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "__tensor__":
            if value not in tensors:
                raise CheckpointError(
                    f"{path}: corrupted: the structure names tensor {value!r}, which the file "
                    "does not hold"
                )
            used.add(value)
            return tensors[value]
        if key == "__tuple__":
            return tuple(_decode(v, tensors, path, used) for v in value)
        if key == "__dict__":
            return {k: _decode(v, tensors, path, used) for k, v in value}
        if key == "__float__":
            return float(value)
    return {k: _decode(v, tensors, path, used) for k, v in node.items()}


def load(path, map_location=None):
    """Read a file written by `save` (or any safetensors file) back.

    Returns the saved structure with every array as a Tensor on `map_location` ("cpu", the
    default, or "cuda"), dtypes as saved (int64, bool, float16...). A safetensors file
    without tinytorch's metadata (e.g. `safetensors.torch.save_file`) loads as a flat dict
    name -> Tensor. Raises CheckpointError, naming the file and the problem, for anything
    that is not an intact safetensors file; nothing is returned half-read.
    """
    from safetensors import safe_open

    path = Path(path)
    device = backend.check_device(map_location or "cpu")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    header = _read_header(path)
    meta = None
    raw_meta = (header.get("__metadata__") or {}).get(META_KEY)
    if raw_meta is not None:
        try:
            meta = json.loads(raw_meta)
            structure, crc = meta["structure"], meta["crc32"]
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(
                f"{path}: corrupted: tinytorch's metadata in the header is unreadable ({e})"
            ) from None
        if meta.get("version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: written by a newer tinytorch (format {meta['version']}, this one "
                f"reads up to {FORMAT_VERSION})"
            )
    arrays = {}
    try:
        with safe_open(path, framework="np") as f:
            for name in f.keys():
                arrays[name] = f.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - any failure inside safetensors means a bad file
        raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from None
    if meta is None:
        return {k: Tensor._wrap(backend.to_device(a, device)) for k, a in arrays.items()}
    for name, arr in arrays.items():
        want = crc.get(name)
        got = zlib.crc32(arr.reshape(-1).view(np.uint8))
        if want is None or want != got:
            raise CheckpointError(
                f"{path}: corrupted: tensor {name!r} fails its checksum (crc32 {got}, "
                f"stored {want}); the file changed after it was written"
            )
    tensors = {k: Tensor._wrap(backend.to_device(a, device)) for k, a in arrays.items()}
    used: set = set()
    try:
        out = _decode(structure, tensors, path, used)
    except (TypeError, ValueError, AttributeError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(
            f"{path}: corrupted: tinytorch's structure is malformed ({e})"
        ) from None
    if used != set(tensors):
        extra = sorted(set(tensors) - used)[:5]
        raise CheckpointError(
            f"{path}: corrupted: the file holds tensors its structure does not name: {extra}"
        )
    return out
