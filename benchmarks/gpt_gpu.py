"""A GPT training step on the GPU: tinytorch (CuPy + its fused kernels) vs PyTorch eager.

The configuration of the GPU part 2 issue: n_layer 6, n_head 6, n_embd 384, block 256,
batch 64, character vocabulary (65), dropout 0, AdamW. Both models start from the same weights;
each step is forward + backward + AdamW on random token batches (the throughput does not
depend on the text). Timing: CUDA events around each step after warm-up, the median step;
tokens/s = batch * block / step time. tinytorch runs twice: with its fused kernels (LayerNorm
and attention) and with the composed tensor-op path (`tinytorch.kernels.composed()`).

    python benchmarks/gpt_gpu.py [--steps 30]

Writes benchmarks/results/gpt_gpu_<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CFG = dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=False)
BATCH = 64


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, CFG["vocab_size"], size=(BATCH, CFG["block_size"] + 1)) for _ in range(n)
    ]


def run_tinytorch(init_state, data, fused: bool):
    import cupy as cp

    import tinytorch as tt
    from tinytorch import kernels
    from tinytorch.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(**CFG))
    model.load_state_dict(init_state)
    model.to("cuda")
    opt = tt.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    times = []
    ctx = kernels.composed() if not fused else _null()
    pool = cp.get_default_memory_pool()
    with ctx:
        for i, d in enumerate(data):
            x = tt.tensor(d[:, :-1], device="cuda")
            y = tt.tensor(d[:, 1:], device="cuda")
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            end.record()
            end.synchronize()
            if i >= 3:
                times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times), float(loss.item()), pool.total_bytes() / 2**20


def run_torch(init_state, data):
    import torch
    from gpt_cpu import torch_gpt

    torch.set_default_device("cuda")
    model = torch_gpt(**CFG)
    model.load_state_dict({k: torch.tensor(v) for k, v in init_state.items()})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i, d in enumerate(data):
        x = torch.tensor(d[:, :-1])
        y = torch.tensor(d[:, 1:])
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        end.record()
        end.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end) / 1e3)
    torch.set_default_device("cpu")
    return statistics.median(times), float(loss.item()), torch.cuda.max_memory_allocated() / 2**20


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main():
    from tinytorch.bench import device_tag, write_results

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()

    from tinytorch.models.gpt import GPT, GPTConfig

    init = {k: v.detach().numpy().copy() for k, v in GPT(GPTConfig(**CFG)).state_dict().items()}
    data = batches(args.steps + 3)
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
        f"Config {CFG}, batch {BATCH}; median of {args.steps} steps after 3 warm-up "
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
