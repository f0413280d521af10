"""What a run reports while it trains: a progress bar for people, files for tools.

- `Progress`: a tqdm bar (step, ETA, loss, lr, last eval) when stdout is a terminal; plain
  progress lines when it is not (CI logs, files); nothing when silent.
- `RunLogger`: every scalar, every step, to DIR/metrics.jsonl (one JSON object per line:
  {"step": 120, "train/loss": 2.31, "train/lr": 0.001, ...}) and, when tensorboardX is
  installed (the `log` extra), to TensorBoard event files in DIR/tb, so
  `tensorboard --logdir DIR` shows the curves. A resumed run appends; readers keep the last
  value logged for each (step, name), and TensorBoard drops events past the resume step
  (purge_step).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

_EXTRA_HINT = "pip install 'tinytorch[log]' (or pip install tensorboardX)"


def _tensorboard_writer(logdir: Path, purge_step=None):
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(f"TensorBoard logging needs tensorboardX: {_EXTRA_HINT}") from e
    return SummaryWriter(logdir=str(logdir), purge_step=purge_step, flush_secs=10)


def tensorboard_available() -> bool:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


class RunLogger:
    """Scalars to DIR/metrics.jsonl and DIR/tb. tensorboard: True (required), False (off) or
    None (on when tensorboardX is installed). `resume_step` > 0 marks a resumed run."""

    def __init__(self, run_dir, tensorboard=None, resume_step: int = 0):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        use_tb = tensorboard_available() if tensorboard is None else bool(tensorboard)
        purge = resume_step + 1 if resume_step else None
        self.tb = _tensorboard_writer(self.dir / "tb", purge) if use_tb else None

    def log(self, step: int, scalars: dict) -> None:
        row = {"step": int(step)}
        for k, v in scalars.items():
            v = float(v)
            row[k] = v if math.isfinite(v) else str(v)  # JSON has no NaN/inf
            if self.tb is not None:
                self.tb.add_scalar(k, v, int(step))
        self._file.write(json.dumps(row) + "\n")

    def flush(self) -> None:
        self._file.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def read_jsonl(path) -> list[dict]:
    """The rows of a metrics.jsonl, the last row per step winning (a resumed run re-logs the
    steps after its checkpoint). Values are floats ("nan"/"inf" strings become floats)."""
    by_step: dict[int, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            step = int(row.pop("step"))
            by_step.setdefault(step, {}).update({k: float(v) for k, v in row.items()})
    return [{"step": s, **by_step[s]} for s in sorted(by_step)]


class Progress:
    """mode: "auto" (a bar on a terminal, lines otherwise), "bar", "lines" or "off".
    Lines are printed every `every` steps (default: about 20 lines per run)."""

    def __init__(self, total: int, initial: int = 0, mode="auto", every: int = 0, file=None):
        self.file = file or sys.stdout
        if mode is True:
            mode = "auto"
        if mode in (False, None):
            mode = "off"
        if mode == "auto":
            mode = "bar" if getattr(self.file, "isatty", lambda: False)() else "lines"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress must be 'auto', 'bar', 'lines' or 'off', got {mode!r}")
        self.mode, self.total, self.initial = mode, total, initial
        self.every = every or max(1, total // 20)
        self.start = time.perf_counter()
        self.last_eval = ""
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", file=self.file)

    def eval(self, metrics: dict) -> None:
        self.last_eval = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def update(self, step: int, loss: float, lr: float) -> None:
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.update(1)
            post = f"loss {loss:.4f} lr {lr:.2e}" + (
                f" | {self.last_eval}" if self.last_eval else ""
            )
            self.bar.set_postfix_str(post, refresh=False)  # tqdm redraws at its own pace
            return
        if step % self.every and step != self.total:
            return
        done = step - self.initial
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - step) if done else float("nan")
        ev = f" | {self.last_eval}" if self.last_eval else ""
        print(
            f"step {step:6d}/{self.total} | loss {loss:.4f} | lr {lr:.2e}{ev} | "
            f"{1e3 * elapsed / max(done, 1):.1f} ms/step | ETA {eta:.0f}s",
            file=self.file,
            flush=True,
        )

    def write(self, message: str) -> None:
        if self.mode == "off":
            return
        if self.bar is not None:
            self.bar.write(message, file=self.file)
        else:
            print(message, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
