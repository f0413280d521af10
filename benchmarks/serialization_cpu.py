"""Checkpoint save/load: tinytorch.save/load (safetensors) against torch.save/torch.load.

The model is chapter 07's GPT (chapters/07_transformer/main.py's defaults: character vocabulary
of tinyshakespeare, 65 symbols; block 64, 4 layers, 4 heads, 128 wide, no biases) and its
PyTorch twin (benchmarks/gpt_cpu.py's nanoGPT copy) with the same weights. Two payloads:

- "model": the state_dict alone;
- "model+AdamW": {"model": state_dict, "optimizer": AdamW's state_dict} after one step, the
  body of a training checkpoint (exp_avg and exp_avg_sq triple the size).

tinytorch.save also fsyncs the file and its folder and renames (a crash leaves the previous
checkpoint) and checksums every tensor; torch.save does neither, so the table adds a
"torch.save atomic" row, torch.save with the same temp file + fsync + rename, for a like for
like price. torch.load runs with weights_only=True (its default since 2.6). Each time is the
median of `--repeat` calls (tinytorch.bench.time_cpu); files live in a temporary folder on the
same disk as the repository.

    python -m benchmarks.serialization_cpu            # writes results/serialization_cpu_cpu.*
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

import tinytorch as tt
from benchmarks.gpt_cpu import torch_gpt
from tinytorch.bench import time_cpu, write_results
from tinytorch.models import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.optim.groups import decay_param_groups
from tinytorch.serialization import load, save

ROOT = Path(__file__).resolve().parent.parent
CONFIG = dict(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, bias=False)


def make_pair(seed: int = 0):
    """tinytorch's GPT and its twin with the same weights, each after one AdamW step."""
    model = GPT(GPTConfig(**CONFIG, dropout=0.0))
    twin = torch_gpt(dropout=0.0, **CONFIG)
    twin.load_state_dict(
        {k: torch.tensor(v.detach().numpy()) for k, v in model.state_dict().items()}
    )
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, CONFIG["vocab_size"], (12, CONFIG["block_size"]))
    opt = AdamW(decay_param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    _, loss = model(tt.tensor(idx), tt.tensor(idx))
    loss.backward()
    opt.step()
    decay = [p for p in twin.parameters() if p.dim() >= 2]
    rest = [p for p in twin.parameters() if p.dim() < 2]
    topt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )
    _, tloss = twin(torch.tensor(idx), torch.tensor(idx))
    tloss.backward()
    topt.step()
    return model, opt, twin, topt


def torch_save_atomic(obj, path: Path) -> None:
    """torch.save with tinytorch.save's durability: temp file, fsync, rename, fsync folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def measure(what: str, ours_obj, torch_obj, folder: Path, repeat: int) -> dict:
    """One table row: save and load times (ms) and file sizes of one payload."""
    ours_path, torch_path = folder / "ours.safetensors", folder / "torch.pt"
    ours_save = time_cpu(lambda: save(ours_obj(), ours_path), repeat=repeat)
    torch_save = time_cpu(lambda: torch.save(torch_obj(), torch_path), repeat=repeat)
    atomic_save = time_cpu(
        lambda: torch_save_atomic(torch_obj(), folder / "atomic.pt"), repeat=repeat
    )
    ours_load = time_cpu(lambda: load(ours_path), repeat=repeat)
    torch_load = time_cpu(lambda: torch.load(torch_path, weights_only=True), repeat=repeat)
    size, tsize = ours_path.stat().st_size, torch_path.stat().st_size
    return {
        "payload": what,
        "tinytorch save ms": 1e3 * ours_save,
        "torch.save ms": 1e3 * torch_save,
        "save ratio": ours_save / torch_save,
        "torch.save atomic ms": 1e3 * atomic_save,
        "tinytorch load ms": 1e3 * ours_load,
        "torch.load ms": 1e3 * torch_load,
        "load ratio": ours_load / torch_load,
        "tinytorch MB": size / 1e6,
        "torch MB": tsize / 1e6,
        "size ratio": size / tsize,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)  # file work: keep the comparison about the formats

    model, opt, twin, topt = make_pair()
    payloads = {
        "model": (lambda: model.state_dict(), lambda: twin.state_dict()),
        "model+AdamW": (
            lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()},
            lambda: {"model": twin.state_dict(), "optimizer": topt.state_dict()},
        ),
    }
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=".bench_serialization_") as d:
        rows = [measure(what, *objs, Path(d), args.repeat) for what, objs in payloads.items()]
    n_params = sum(p.data.size for p in model.parameters())
    notes = (
        f"Chapter 07's GPT ({n_params:,} parameters, float32) and its PyTorch twin with the "
        "same weights; AdamW state after one step. Medians of "
        f"{args.repeat} calls. Targets (issue 14): save and load within 1.5x of torch, file "
        "within 1.1x. tinytorch.save fsyncs and renames (crash-safe) and checksums each "
        "tensor; torch.save does neither ('torch.save atomic' adds fsync + rename to it). "
        "The safetensors file also stores the tied wte/lm_head matrix twice (both keys of "
        "the state_dict, as safetensors.torch expects them), torch.save once."
    )
    load_avg = [round(x, 2) for x in os.getloadavg()]  # a shared machine: say how busy it was
    notes += f" Load average (1, 5, 15 min) when the run ended: {load_avg}."
    columns = list(rows[0])
    write_results(
        "serialization_cpu",
        "cpu",
        columns,
        rows,
        notes,
        {"repeat": args.repeat, "loadavg": load_avg},
    )


if __name__ == "__main__":
    main()
