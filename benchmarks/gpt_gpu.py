"""A GPT training step on the GPU: tinytorch (CuPy + its fused kernels) vs PyTorch eager.

The configuration of the GPU part 2 issue: n_layer 6, n_head 6, n_embd 384, block 256,
batch 64, character vocabulary (65), dropout 0, AdamW. Both models start from the same weights;
each step is forward + backward + AdamW on random token batches (the throughput does not
depend on the text). Timing: tinytorch.bench.time_cuda (CUDA events) around each step after
warm-up, the median step; tokens/s = batch * block / step time. tinytorch runs twice: with
its fused kernels (LayerNorm and attention) and with the composed tensor-op path
(`tinytorch.kernels.composed()`).

    python -m benchmarks.gpt_gpu [--steps 30]

Writes benchmarks/results/gpt_gpu_<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from tinytorch.bench import time_cuda

HERE = Path(__file__).resolve().parent

CFG = dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=False)
BATCH = 64
WARMUP = 3  # steps before timing (CuPy's memory pool and the kernel module settle)


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, CFG["vocab_size"], size=(BATCH, CFG["block_size"] + 1)) for _ in range(n)
    ]


def step_fn(model, opt, pairs):
    """The step both libraries time, the same lines: forward on the next (x, y) of `pairs`,
    backward, AdamW. Returns (step, last): last["loss"] is the latest step's loss, read after
    timing (reading it inside would wait for the GPU)."""
    last = {}

    def step():
        x, y = next(pairs)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last["loss"] = loss

    return step, last


def run_tinytorch(init_state, data, fused: bool):
    import cupy as cp

    import tinytorch as tt
    from tinytorch import kernels
    from tinytorch.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(**CFG))
    model.load_state_dict(init_state)
    model.to("cuda")
    opt = tt.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    # the batches on the GPU before timing: a step is forward + backward + AdamW only
    pairs = iter(
        [(tt.tensor(d[:, :-1], device="cuda"), tt.tensor(d[:, 1:], device="cuda")) for d in data]
    )
    step, last = step_fn(model, opt, pairs)
    pool = cp.get_default_memory_pool()
    with kernels.composed() if not fused else contextlib.nullcontext():
        t = time_cuda(step, warmup=WARMUP, repeat=len(data) - WARMUP)
    return t, float(last["loss"].item()), pool.total_bytes() / 2**20


def run_torch(init_state, data):
    import torch

    from benchmarks.gpt_cpu import torch_gpt

    torch.set_default_device("cuda")
    model = torch_gpt(**CFG)
    model.load_state_dict({k: torch.tensor(v) for k, v in init_state.items()})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    torch.cuda.reset_peak_memory_stats()
    pairs = iter([(torch.tensor(d[:, :-1]), torch.tensor(d[:, 1:])) for d in data])
    # torch runs on the legacy default stream, the one CuPy's events time
    step, last = step_fn(model, opt, pairs)
    t = time_cuda(step, warmup=WARMUP, repeat=len(data) - WARMUP)
    torch.set_default_device("cpu")
    return t, float(last["loss"].item()), torch.cuda.max_memory_allocated() / 2**20


def main():
    from tinytorch.bench import device_tag, write_results

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()

    from tinytorch.models.gpt import GPT, GPTConfig

    init = {k: v.detach().numpy().copy() for k, v in GPT(GPTConfig(**CFG)).state_dict().items()}
    data = batches(args.steps + WARMUP)
    tokens = BATCH * CFG["block_size"]
    rows = []
    t_torch, l_torch, m_torch = run_torch(init, data)
    rows.append(
        dict(
            impl="PyTorch eager (float32)",
            ms_per_step=t_torch * 1e3,
            tokens_per_s=tokens / t_torch,
            ratio_to_torch=1.0,
            final_loss=l_torch,
            memory_MiB=m_torch,
        )
    )
    for fused in (True, False):
        t, l, m = run_tinytorch(init, data, fused)
        name = "tinytorch + fused kernels" if fused else "tinytorch composed (no kernels)"
        rows.append(
            dict(
                impl=name,
                ms_per_step=t * 1e3,
                tokens_per_s=tokens / t,
                ratio_to_torch=t_torch / t,
                final_loss=l,
                memory_MiB=m,
            )
        )
    notes = (
        f"Config {CFG}, batch {BATCH}; median of {args.steps} steps after {WARMUP} warm-up "
        "steps; ratio_to_torch = PyTorch step time / this step time (higher is faster); "
        "memory: tinytorch = CuPy pool total bytes, PyTorch = max_memory_allocated. "
        "Both float32, no TF32 (PyTorch's default for matmul; CuPy's default)."
    )
    write_results(
        "gpt_gpu",
        device_tag("cuda"),
        ["impl", "ms_per_step", "tokens_per_s", "ratio_to_torch", "final_loss", "memory_MiB"],
        rows,
        notes=notes,
    )


if __name__ == "__main__":
    main()
