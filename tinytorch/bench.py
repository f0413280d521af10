"""Measuring and recording: the one timer, the machine description, the result files.

Every benchmark script (`python -m benchmarks.NAME`) and every chapter's `--record` run uses
this module: time tinytorch and the reference in the same process on the same inputs, then
`write_results` writes benchmarks/results/<name>_<device>.md and .json with the device, library
versions, date, commit and the exact command, so a figure quoted in a README or a chapter can
always be traced to a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# the repository this package sits in (a source checkout: benchmarks/ is next to tinytorch/)
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def import_torch():
    """`import torch`, with PyTorch's own OpenMP defaults, in a process that times PyTorch alone.

    Importing tinytorch sets OMP_WAIT_POLICY=passive (tinytorch/__init__.py) unless the user set
    it, and child processes inherit it. OpenMP reads it once, when the runtime loads: for
    PyTorch at `import torch`. PyTorch's libgomp has the soname libgomp.so.1, so tinytorch's
    kernels, loaded later in the same process, share that one runtime and its policy: one
    process cannot give both libraries their own defaults. gpt_cpu times each framework in its
    own worker process; its PyTorch worker imports torch through this function (a chapter 07 step
    measured 74 ms with PyTorch's threads sleeping, 49 ms with its defaults).
    """
    if "torch" in sys.modules:
        return sys.modules["torch"]
    ours = os.environ.get("TINYTORCH_OMP_WAIT_POLICY") == "1"
    saved = os.environ.pop("OMP_WAIT_POLICY", None) if ours else None
    try:
        import torch
    finally:
        if saved is not None:
            os.environ["OMP_WAIT_POLICY"] = saved
    return torch


# A result file's "timing" when both libraries ran in one process (micro benchmarks: the one
# OpenMP runtime at PyTorch's defaults, torch imported first through import_torch)
SAME_PROCESS = "one process, PyTorch's OpenMP defaults"


def time_cpu(fn, warmup: int = 3, repeat: int = 20, min_time: float = 0.0, samples=None) -> float:
    """Median wall time of fn() in seconds, after `warmup` calls (CPU work only): at least
    `repeat` timed calls, more until `min_time` seconds have passed. `samples`, a list, gets
    every timed call's seconds appended (for the spread)."""
    # BEGIN EXERCISE ch12: time_median - warm-up calls, then time each call, return the median
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start) < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    if samples is not None:
        samples.extend(times)
    return statistics.median(times)
    # END EXERCISE


def time_cuda(fn, warmup: int = 5, repeat: int = 50) -> float:
    """Median time of fn() in seconds with CUDA events on CuPy's current stream."""
    import cupy as cp

    for _ in range(warmup):
        fn()
    cp.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(repeat):
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


def machine() -> dict:
    """Device, CPU and library versions for the result file."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    for mod in ("numpy", "torch", "cupy", "tiktoken", "tokenizers"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - absent library: simply not listed
            pass
    try:
        import torch

        torch_threads = torch.get_num_threads()
        info["torch_threads"] = torch_threads
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    return info


def _cpu_model() -> str:
    """The CPU's model name and vector extensions (from /proc/cpuinfo on Linux): CPU timings
    depend on them (the tiled attention kernel runs 16-, 8- or 4-float vectors)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "")
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    ext = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    return f"{name} ({' '.join(ext) or 'no AVX'})"


def device_tag(device: str) -> str:
    """'cpu' or 'cuda', with the GPU's name when there is one, for result file names."""
    if device == "cpu":
        return "cpu"
    m = machine()
    return "cuda-" + m.get("gpu", "gpu").lower().replace(" ", "-")


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    device: str,
    columns: list[str],
    rows: list[dict],
    notes: str = "",
    extra: dict | None = None,
    figures=(),
) -> Path:
    """Print the table and write results/<name>_<device>.{md,json}; returns the .md path.

    Each of `figures` (a path to a PNG the run wrote) is copied to
    results/<name>_<figure file name>, so the lesson and README can show it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    command = "python " + " ".join([_script(), *sys.argv[1:]])
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = _git_commit()
    table = markdown_table(columns, rows)
    print(table)
    stem = RESULTS / f"{name}_{device}"
    md = [
        f"# {name} ({device})",
        "",
        f"- date: {date}",
        f"- command: `{command}`",
        f"- commit: {commit}",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        table,
        "",
    ]
    if notes:
        md += [notes, ""]
    _atomic_write(stem.with_suffix(".md"), "\n".join(md))
    payload = {
        "name": name,
        "device": device,
        "date": date,
        "command": command,
        "commit": commit,
        "machine": info,
        "columns": columns,
        "rows": rows,
        **(extra or {}),
    }
    _atomic_write(stem.with_suffix(".json"), json.dumps(payload, indent=2, default=str))
    for fig in map(Path, figures):
        shutil.copyfile(fig, RESULTS / f"{name}_{fig.name}")
    print(f"wrote {stem.with_suffix('.md')} and .json")
    return stem.with_suffix(".md")


def _git_commit() -> str:
    """The checkout's commit, with "+changes" when the tracked files differ from it."""
    root = ROOT
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", ".", ":!benchmarks/results"], cwd=root
        ).returncode
    except OSError:
        return "unknown (no git)"
    return (head or "unknown") + (" +changes" if head and dirty else "")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _script() -> str:
    """How this process was started, as a command a reader can repeat from the repository root:
    `-m benchmarks.NAME` for a benchmark module, else the script's path relative to the root."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return f"-m {spec.name}"
    return os.path.relpath(sys.argv[0], ROOT) if sys.argv[0] else ""


# A chapter's `--record` is the same call, usually with figures=[the PNGs the run wrote].
record = write_results
