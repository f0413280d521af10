"""Training a 2-layer character LSTM on CPU: tinytorch against PyTorch's nn.LSTM.

    python -m benchmarks.rnn_cpu               # 500 steps each (a few minutes on 2 cores)
    python -m benchmarks.rnn_cpu --quick       # 30 steps: checks that it runs
    python -m benchmarks.rnn_cpu --threads 1   # both libraries on one thread (busy machines)

The model is CharRNN (Embedding 65 -> 64, LSTM 64 -> 256 x 2 layers, Linear 256 -> 65) and
its twin written with torch.nn, starting from the same weights. Both train in the same process
on the same truncated-BPTT windows (batch 32 x 64 characters, state carried and detached),
with Adam (lr 2e-3) and clipping at 1.0, alternating one step each (ours through
tinytorch.train.train_step with the TBPTT loss, the chapters' step). Reported: the median
training step time (forward, backward, clipping and the Adam update) after warm-up, the
median forward + backward time of the LSTM stack alone, and the validation loss each reaches
on tinyshakespeare after the same steps. Targets: within 2x of PyTorch's step time and the
same validation loss within 0.02. Writes results/rnn_cpu.{md,json,png}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# --threads N must reach OpenBLAS before NumPy loads it (on a busy machine, BLAS threads that
# outnumber free cores spin and slow everything down many times; --threads 1 is robust)
if "--threads" in sys.argv:
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tinytorch as tt  # noqa: E402
from tinytorch import optim  # noqa: E402
from tinytorch.bench import RESULTS, time_cpu, write_results  # noqa: E402
from tinytorch.data import dataset_path  # noqa: E402
from tinytorch.data.windows import TBPTTLoader, tbptt_batches  # noqa: E402
from tinytorch.models.char_rnn import CharRNN  # noqa: E402
from tinytorch.text import CharTokenizer  # noqa: E402
from tinytorch.train import evaluate, train_step  # noqa: E402
from tinytorch.train.tbptt import TBPTTLoss  # noqa: E402

VOCAB_EMBED, HIDDEN, LAYERS, BATCH, SEQ, LR, CLIP = 64, 256, 2, 32, 64, 2e-3, 1.0


class TorchCharLSTM(torch.nn.Module):
    """CharRNN written with torch.nn: the same parameter names, so state_dicts move over."""

    def __init__(self, vocab):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, VOCAB_EMBED)
        self.rnn = torch.nn.LSTM(VOCAB_EMBED, HIDDEN, LAYERS, batch_first=True)
        self.head = torch.nn.Linear(HIDDEN, vocab)

    def forward(self, idx, state=None):
        out, state = self.rnn(self.embedding(idx), state)
        return self.head(out), state


def torch_step(model, opt, x, y, state):
    state = None if state is None else tuple(s.detach() for s in state)
    logits, state = model(x, state)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    opt.step()
    return loss.item(), state


@torch.no_grad()
def torch_eval(model, ids, max_batches):
    total, n, state = 0.0, 0, None
    for k, (x, y) in enumerate(tbptt_batches(ids, BATCH, SEQ)):
        if max_batches is not None and k >= max_batches:
            break
        logits, state = model(torch.from_numpy(x.numpy()), state)
        total += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y.numpy()).reshape(-1)
        ).item()
        n += 1
    return total / n


def stack_fwd_bwd_times(repeat):
    """Forward + backward of the LSTM stack alone, (B, T, 64) -> (B, T, 256), same weights."""
    ours = tt.nn.LSTM(VOCAB_EMBED, HIDDEN, LAYERS, batch_first=True)
    theirs = torch.nn.LSTM(VOCAB_EMBED, HIDDEN, LAYERS, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((BATCH, SEQ, VOCAB_EMBED)).astype(np.float32)

    def run_ours():
        xi = tt.tensor(x, requires_grad=True)
        ours(xi)[0].sum().backward()

    def run_theirs():
        xi = torch.tensor(x, requires_grad=True)
        theirs(xi)[0].sum().backward()

    return time_cpu(run_ours, repeat=repeat), time_cpu(run_theirs, repeat=repeat)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-batches", type=int, default=None, help="cap on validation windows")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS and torch threads (default: the libraries' own choice)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.eval_batches = 30, 5
    tt.manual_seed(args.seed)
    torch.manual_seed(args.seed)

    text = dataset_path("tinyshakespeare").read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids, vocab = np.array(tok.encode(text), dtype=np.int64), tok.vocab_size
    n = int(0.9 * len(ids))
    train_ids, val_ids = ids[:n], ids[n:]

    ours = CharRNN(vocab, VOCAB_EMBED, HIDDEN, LAYERS, cell="lstm")
    theirs = TorchCharLSTM(vocab)
    theirs.load_state_dict(
        {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in ours.state_dict().items()}
    )
    opt = optim.Adam(ours.parameters(), lr=LR)
    topt = torch.optim.Adam(theirs.parameters(), lr=LR)

    times = {"tinytorch": [], "torch": []}
    losses = {"tinytorch": [], "torch": []}
    loss_fn, loader, windows, s_theirs = TBPTTLoss(), TBPTTLoader(train_ids, BATCH, SEQ), None, None
    t_start = time.perf_counter()
    for step in range(1, args.steps + 1):
        try:
            x, y, first = next(windows)
        except (StopIteration, TypeError):  # start (again) from the top: fresh states
            windows = iter(loader)
            x, y, first = next(windows)
        if first:
            s_theirs = None
        xt, yt = torch.from_numpy(x.numpy()), torch.from_numpy(y.numpy())
        t0 = time.perf_counter()
        loss = train_step(ours, opt, (x, y, first), loss_fn=loss_fn, clip_grad_norm=CLIP)
        t1 = time.perf_counter()
        tloss, s_theirs = torch_step(theirs, topt, xt, yt, s_theirs)
        t2 = time.perf_counter()
        times["tinytorch"].append(t1 - t0)
        times["torch"].append(t2 - t1)
        losses["tinytorch"].append(loss)
        losses["torch"].append(tloss)
        if step % 50 == 0 or step == args.steps:
            print(
                f"step {step:4d}  loss tinytorch {loss:.4f} torch {tloss:.4f}  step time "
                f"{1e3 * (t1 - t0):6.1f} ms vs {1e3 * (t2 - t1):6.1f} ms  "
                f"({time.perf_counter() - t_start:.0f}s)",
                flush=True,
            )

    val_ours = evaluate(ours, TBPTTLoader(val_ids, BATCH, SEQ), loss_fn, args.eval_batches)
    val_theirs = torch_eval(theirs, val_ids, args.eval_batches)
    warm = min(5, args.steps - 1)
    step_ours = statistics.median(times["tinytorch"][warm:])
    step_theirs = statistics.median(times["torch"][warm:])
    fb_ours, fb_theirs = stack_fwd_bwd_times(repeat=5 if args.quick else 20)

    rows = [
        {
            "measure": "training step (ms, median)",
            "tinytorch": 1e3 * step_ours,
            "torch": 1e3 * step_theirs,
            "ratio": step_ours / step_theirs,
        },
        {
            "measure": "LSTM stack forward+backward (ms, median)",
            "tinytorch": 1e3 * fb_ours,
            "torch": 1e3 * fb_theirs,
            "ratio": fb_ours / fb_theirs,
        },
        {
            "measure": f"validation loss after {args.steps} steps",
            "tinytorch": val_ours,
            "torch": val_theirs,
            "ratio": val_ours / val_theirs,
        },
    ]
    ok_time, ok_loss = step_ours / step_theirs <= 2.0, abs(val_ours - val_theirs) <= 0.02
    notes = (
        f"2-layer character LSTM (embedding {VOCAB_EMBED}, hidden {HIDDEN}, vocabulary "
        f"{vocab}), batch {BATCH} x {SEQ} characters, Adam lr {LR}, clip {CLIP}, float32, "
        f"the same initial weights and windows for both; validation on the last 10% of "
        f"tinyshakespeare ({'all' if args.eval_batches is None else args.eval_batches} "
        f"windows). Step time target (<= 2x PyTorch): {'met' if ok_time else 'NOT met'}; "
        f"validation loss target (within 0.02): {'met' if ok_loss else 'NOT met'} "
        f"(difference {abs(val_ours - val_theirs):.4f}). torch threads: "
        f"{torch.get_num_threads()}; OPENBLAS_NUM_THREADS: "
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset (OpenBLAS default)')}."
    )
    write_results(
        "rnn",
        "cpu",
        ["measure", "tinytorch", "torch", "ratio"],
        rows,
        notes=notes,
        extra={
            "steps": args.steps,
            "losses": losses,
            "step_times_s": times,
            "val_loss": {"tinytorch": val_ours, "torch": val_theirs},
        },
    )
    plot(losses, times, RESULTS / "rnn_cpu.png")


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
