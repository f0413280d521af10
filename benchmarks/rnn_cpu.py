"""Training a 2-layer character LSTM on CPU: tinytorch against PyTorch's nn.LSTM.

    python -m benchmarks.rnn_cpu               # 500 steps each (a few minutes on 2 cores)
    python -m benchmarks.rnn_cpu --quick       # 30 steps: checks that it runs
    python -m benchmarks.rnn_cpu --threads 1   # both libraries on one thread (busy machines)

The model is CharRNN (Embedding 65 -> 64, LSTM 64 -> 256 x 2 layers, Linear 256 -> 65) and
its twin written with torch.nn, starting from the same weights, on the same truncated-BPTT
windows (batch 32 x 64 characters, state carried and detached), with Adam (lr 2e-3) and
clipping at 1.0 (ours through tinytorch.train.train_step with the TBPTT loss, the chapters'
step). Each framework trains in its own worker process (tinytorch.bench_workers), with its
library's own OpenMP defaults; the workers take turns, --chunk steps at a time, the order
alternating, so both see the same minutes of the machine. Reported: the median training step
time (forward, backward, clipping and the Adam update) after warm-up, the median forward +
backward time of the LSTM stack alone (each worker times its own after training), and the
validation loss each reaches on tinyshakespeare after the same steps. Targets: at most 1.0x
PyTorch's step time (issue 17) and the same validation loss within 0.02. Writes
results/rnn_cpu.{md,json,png}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

# --threads N must reach OpenBLAS before NumPy loads it, in the workers too (they inherit it)
if "--threads" in sys.argv:
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import numpy as np  # noqa: E402

import tinytorch as tt  # noqa: E402
from tinytorch.bench import RESULTS, import_torch, time_cpu, write_results  # noqa: E402
from tinytorch.bench_workers import interleave, timing  # noqa: E402
from tinytorch.data import dataset_path  # noqa: E402
from tinytorch.data.windows import TBPTTLoader, tbptt_batches  # noqa: E402
from tinytorch.text import CharTokenizer  # noqa: E402
from tinytorch.train import evaluate, train_step  # noqa: E402

VOCAB_EMBED, HIDDEN, LAYERS, BATCH, SEQ, LR, CLIP = 64, 256, 2, 32, 64, 2e-3, 1.0


def torch_char_lstm(vocab):
    """CharRNN written with torch.nn: the same parameter names, so state_dicts move over."""
    torch = import_torch()

    class TorchCharLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, VOCAB_EMBED)
            self.rnn = torch.nn.LSTM(VOCAB_EMBED, HIDDEN, LAYERS, batch_first=True)
            self.head = torch.nn.Linear(HIDDEN, vocab)

        def forward(self, idx, state=None):
            out, state = self.rnn(self.embedding(idx), state)
            return self.head(out), state

    return TorchCharLSTM()


def load_ids():
    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text), dtype=np.int64)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], tok.vocab_size


class Run:
    """One framework's training inside its benchmark worker: the window for step i is taken
    in untimed(i); step(i) is one training step on it."""

    def __init__(self, framework: str, seed: int, eval_batches, threads):
        from tinytorch.models.char_rnn import CharRNN

        self.framework, self.eval_batches = framework, eval_batches
        self.train_ids, self.val_ids, vocab = load_ids()
        tt.manual_seed(seed)
        ours = CharRNN(vocab, VOCAB_EMBED, HIDDEN, LAYERS, cell="lstm")  # the initial weights
        self.loader, self.windows, self.state = TBPTTLoader(self.train_ids, BATCH, SEQ), None, None
        if framework == "tinytorch":
            from tinytorch import optim
            from tinytorch.train.tbptt import TBPTTLoss

            self.model, self.loss_fn = ours, TBPTTLoss()
            self.opt = optim.Adam(ours.parameters(), lr=LR)
            return
        torch = self.torch = import_torch()
        if threads:
            torch.set_num_threads(threads)
        self.model = torch_char_lstm(vocab)
        self.model.load_state_dict(
            {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in ours.state_dict().items()}
        )
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR)

    def untimed(self, i: int) -> None:
        try:
            self.batch = next(self.windows)
        except (StopIteration, TypeError):  # start (again) from the top: fresh states
            self.windows = iter(self.loader)
            self.batch = next(self.windows)

    def step(self, i: int) -> float:
        x, y, first = self.batch
        if self.framework == "tinytorch":
            return train_step(
                self.model, self.opt, (x, y, first), loss_fn=self.loss_fn, clip_grad_norm=CLIP
            )
        torch, F = self.torch, self.torch.nn.functional
        state = None if first or self.state is None else tuple(s.detach() for s in self.state)
        logits, self.state = self.model(torch.from_numpy(x.numpy()), state)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y.numpy()).reshape(-1)
        )
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.opt.step()
        return loss.item()

    def finish(self) -> dict:
        return {"val_loss": self.validation_loss(), "stack_s": self.stack_fwd_bwd(20)}

    def validation_loss(self) -> float:
        if self.framework == "tinytorch":
            loader = TBPTTLoader(self.val_ids, BATCH, SEQ)
            return evaluate(self.model, loader, self.loss_fn, self.eval_batches)
        torch, F = self.torch, self.torch.nn.functional
        total, n, state = 0.0, 0, None
        with torch.no_grad():
            for k, (x, y) in enumerate(tbptt_batches(self.val_ids, BATCH, SEQ)):
                if self.eval_batches is not None and k >= self.eval_batches:
                    break
                logits, state = self.model(torch.from_numpy(x.numpy()), state)
                y = torch.from_numpy(y.numpy()).reshape(-1)
                total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y).item()
                n += 1
        return total / n

    def stack_fwd_bwd(self, repeat: int) -> float:
        """Median forward + backward of an LSTM stack alone, (B, T, 64) -> (B, T, 256)."""
        x = np.random.default_rng(0).standard_normal((BATCH, SEQ, VOCAB_EMBED)).astype(np.float32)
        lib = tt if self.framework == "tinytorch" else self.torch
        stack = lib.nn.LSTM(VOCAB_EMBED, HIDDEN, LAYERS, batch_first=True)

        def run():
            xi = lib.tensor(x, requires_grad=True)
            stack(xi)[0].sum().backward()

        return time_cpu(run, repeat=repeat)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-batches", type=int, default=None, help="cap on validation windows")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk", type=int, default=25, help="steps per turn (the workers alternate)")
    p.add_argument("--name", default="rnn", help="result file stem (default rnn)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS and torch threads (default: the libraries' own choice)",
    )
    args = p.parse_args()
    if args.quick:
        args.steps, args.eval_batches, args.chunk = 30, 5, 10
    kwargs = dict(seed=args.seed, eval_batches=args.eval_batches, threads=args.threads)
    names = ("tinytorch", "torch")
    targets = {n: ("benchmarks.rnn_cpu:Run", dict(framework=n, **kwargs)) for n in names}
    print(f"{args.steps} steps each, {args.chunk} at a time in turn", flush=True)
    runs = interleave(targets, args.steps, args.chunk)
    times = {n: runs[n]["times"] for n in names}
    losses = {n: runs[n]["outputs"] for n in names}
    for step in range(49, args.steps, 50):
        print(
            f"step {step + 1:4d}  loss tinytorch {losses['tinytorch'][step]:.4f} "
            f"torch {losses['torch'][step]:.4f}"
        )
    val = {n: runs[n]["result"]["val_loss"] for n in names}
    stack = {n: runs[n]["result"]["stack_s"] for n in names}
    warm = min(5, args.steps - 1)
    step_s = {n: statistics.median(times[n][warm:]) for n in names}

    def row(measure, a, b):
        return {"measure": measure, "tinytorch": a, "torch": b, "ratio": a / b}

    rows = [
        row("training step (ms, median)", 1e3 * step_s["tinytorch"], 1e3 * step_s["torch"]),
        row(
            "LSTM stack forward+backward (ms, median)",
            1e3 * stack["tinytorch"],
            1e3 * stack["torch"],
        ),
        row(f"validation loss after {args.steps} steps", val["tinytorch"], val["torch"]),
    ]
    ratio = step_s["tinytorch"] / step_s["torch"]
    diff = abs(val["tinytorch"] - val["torch"])
    notes = (
        f"2-layer character LSTM (embedding {VOCAB_EMBED}, hidden {HIDDEN}), batch {BATCH} x "
        f"{SEQ} characters, Adam lr {LR}, clip {CLIP}, float32, the same initial weights and "
        f"windows for both; validation on the last 10% of tinyshakespeare "
        f"({'all' if args.eval_batches is None else args.eval_batches} windows). Each "
        f"framework in its own worker process with its own OpenMP defaults, taking turns of "
        f"{args.chunk} steps, the order alternating. Step time target (<= 1.0x PyTorch): "
        f"{'met' if ratio <= 1.0 else 'NOT met'} ({ratio:.3f}x); validation loss target "
        f"(within 0.02): {'met' if diff <= 0.02 else 'NOT met'} (difference {diff:.4f}). "
        f"torch threads: {runs['torch'].get('torch_threads')}; OPENBLAS_NUM_THREADS: "
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset (OpenBLAS default)')}. Load average "
        "(1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + "."
    )
    write_results(
        args.name,
        "cpu",
        ["measure", "tinytorch", "torch", "ratio"],
        rows,
        notes=notes,
        extra={
            "timing": timing(args.chunk),
            "steps": args.steps,
            "losses": losses,
            "step_times_s": times,
            "val_loss": val,
        },
    )
    plot(losses, times, RESULTS / f"{args.name}_cpu.png")


def plot(losses, times, path):
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, v in losses.items():
        a1.plot(np.arange(1, len(v) + 1), v, label=name, lw=0.8)
    a1.set_xlabel("step")
    a1.set_ylabel("training loss (nats/char)")
    a1.set_title("2-layer char LSTM, same weights and batches")
    a1.legend()
    names = list(times)
    med = [1e3 * statistics.median(times[k][min(5, len(times[k]) - 1) :]) for k in names]
    a2.bar(names, med, color=["tab:blue", "tab:orange"])
    for i, m in enumerate(med):
        a2.text(i, m, f"{m:.0f} ms", ha="center", va="bottom")
    a2.set_ylabel("median training step (ms)")
    a2.set_title("CPU step time (B=32, T=64, H=256, 2 layers)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
