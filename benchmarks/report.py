"""One report from the benchmarks' result files: benchmarks/suite.py writes it; README's table
(benchmarks/readme_table.py) reads the same numbers through `ratios`.

Every comparison is reduced to one number, the TIME RATIO tinytorch / PyTorch measured in the
same run (below 1: tinytorch is faster), whatever the benchmark's own table calls its ratio
(some print speed-ups, PyTorch's time / ours: those are inverted here).

    ratios(payload) -> [(case, ratio), ...]    one result file's comparisons
    write(out, tag, results, profile, meta)    report_<tag>.md/.json + PNGs into out
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# benchmark -> what its comparison is (the "what" column of the report and README)
WHAT = {
    "ops": "ops forward + backward, geometric mean over ops",
    "gpt_cpu": "chapter 07 GPT training step (CPU)",
    "rnn": "2-layer LSTM training step (CPU)",
    "attention_cpu": "fused attention forward + backward (CPU)",
    "kernels_cpu": "fused LayerNorm forward + backward through autograd (CPU)",
    "gelu_cpu": "fused GELU forward + backward through autograd (CPU)",
    "gpt_gpu": "GPT training step (GPU, fused kernels)",
    "kernels_gpu": "LayerNorm forward + backward, best kernel version (GPU)",
    "attention_gpu": "flash attention forward + backward, best version (GPU)",
    "finetune_cpu": "chapter 09 BERT fine-tuning step against transformers' (CPU)",
    "translation_cpu": "chapter 10 Transformer training step (CPU)",
}


def gmean(xs) -> float:
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def ratios(payload: dict) -> list[tuple[str, float]]:
    """(case, tinytorch time / PyTorch time) for each comparison in one result file."""
    name, rows = payload.get("name", ""), payload.get("rows", [])
    if name == "ops":
        rows = [r for r in rows if "x" in r["size"]]  # not the 1-element per-call overhead row
        sizes = list(dict.fromkeys(r["size"] for r in rows))
        return [(s, gmean(r["ratio"] for r in rows if r["size"] == s)) for s in sizes]
    if name.startswith("gpt_cpu"):
        return [("step", r["ratio vs torch"]) for r in rows if r["framework"] == "tinytorch"]
    if name in ("finetune_cpu", "translation_cpu"):
        return [("step", r["ratio vs torch"]) for r in rows if r["framework"] == "tinytorch"]
    if name == "rnn":
        return [("step", r["ratio"]) for r in rows if r["measure"].startswith("training step")]
    if name == "attention_cpu":
        return [
            (f"T={r['T']}{' causal' if r['causal'] else ''}", 1 / r["vs_torch"])
            for r in rows
            if r.get("vs_torch")
        ]
    if name == "kernels_cpu":
        return [
            (f"C={r['C']}", 1 / r["vs_torch"]) for r in rows if r["impl"] == "F.layer_norm fused"
        ]
    if name == "gelu_cpu":
        return [(r["shape"], 1 / r["vs_torch"]) for r in rows if r.get("vs_torch")]
    if name == "gpt_gpu":
        return [
            ("step", 1 / r["ratio_to_torch"]) for r in rows if r["impl"].endswith("fused kernels")
        ]
    if name == "kernels_gpu":
        best = {}
        for r in rows:
            if r["impl"] not in ("torch",) and r["impl"].startswith("v") and r.get("vs_torch"):
                best[r["C"]] = max(best.get(r["C"], 0.0), r["vs_torch"])
        return [(f"C={c}", 1 / v) for c, v in best.items()]
    if name == "attention_gpu":
        best = {}
        for r in rows:
            if r["impl"].startswith("v") and r.get("vs_torch_fwdbwd"):
                k = f"T={r['T']} d={r['d']}{' causal' if r['causal'] else ''}"
                best[k] = max(best.get(k, 0.0), r["vs_torch_fwdbwd"])
        return [(k, 1 / v) for k, v in best.items()]
    return []


def _plot_ratios(all_ratios, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    labels = [f"{b}: {c}" for b, c, _ in all_ratios]
    values = [r for _, _, r in all_ratios]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(values) + 1.4))
    colors = ["tab:green" if v <= 1 else "tab:red" for v in values]
    ax.barh(range(len(values)), values, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("time ratio tinytorch / PyTorch (same run; < 1: tinytorch faster)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_attention(rows, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: (r["causal"], r["T"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for causal in sorted({r["causal"] for r in rows}):
        rs = [r for r in rows if r["causal"] == causal]
        ts = [r["T"] for r in rs]
        style = "-" if causal else "--"
        for key, label in (("fused_fwdbwd_ms", "tinytorch fused"), ("torch_fwdbwd_ms", "PyTorch")):
            tag = "causal" if causal else "full"
            ax.plot(ts, [r[key] for r in rs], style, marker="o", label=f"{label} ({tag})")
        ax.plot(ts, [r["composed_fwdbwd_ms"] for r in rs], style, marker="x", alpha=0.5,
                label=f"tinytorch composed ({'causal' if causal else 'full'})")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("forward + backward, ms (median)")
    ax.set_title("attention on the CPU: time against T", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_profile(rows, path: Path, top: int = 15) -> None:
    import matplotlib.pyplot as plt

    rows = rows[:top]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.4))
    color = {"op": "tab:blue", "backward": "tab:orange", "kernel": "tab:purple"}
    ax.barh(
        range(len(rows)),
        [r["self_ms_per_step"] for r in rows],
        color=[color.get(r["kind"], "gray") for r in rows],
    )
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("self time per step, ms (blue: forward, orange: backward, purple: kernel)")
    ax.set_title("chapter 07 GPT step: top ops by self time (tinytorch.profiler)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, tag: str, results: dict, profile: dict, meta: dict, record=False) -> Path:
    """Write report_<tag>.md (+ .json, PNGs) into `out`; with record=True through
    tinytorch.bench.record, which adds the device, versions, date, commit and command."""
    from tinytorch import bench

    payloads = [p for ps in results.values() for p in ps]
    all_ratios = [(p["name"], c, r) for p in payloads for c, r in ratios(p)]
    figures = []
    if all_ratios:
        figures.append(out / f"report_{tag}_ratios.png")
        kind = "quick sizes (CI check, not a measurement)" if meta["quick"] else tag
        _plot_ratios(all_ratios, figures[-1], f"tinytorch / PyTorch time, {kind}")
    att = next((p for p in payloads if p["name"] == "attention_cpu"), None)
    if att:
        figures.append(out / f"report_{tag}_attention_scaling.png")
        _plot_attention(att["rows"], figures[-1])
    figures.append(out / f"report_{tag}_gpt_profile.png")
    _plot_profile(profile["rows"], figures[-1])

    rows = [dict(benchmark=b, what=WHAT.get(b, b), case=c, time_ratio=r) for b, c, r in all_ratios]
    lines = [
        f"Each benchmark ran in its own process, tinytorch and PyTorch in the same run on the "
        f"same inputs; time_ratio = tinytorch's time / PyTorch's (< 1: tinytorch is faster). "
        f"{'QUICK run: tiny sizes and few repeats, a check that everything runs, not a measurement. ' if meta['quick'] else ''}"  # noqa: E501
        f"Raw result files: `{meta['raw']}/`. {meta['notes']}",
        "",
        "Threads: " + ", ".join(f"{k} {v}" for k, v in meta["threads"].items()),
        "",
        "Benchmark wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in meta["seconds"].items()),
    ]
    if meta["failed"]:
        lines += ["", "FAILED: " + "; ".join(f"{k}: {v}" for k, v in meta["failed"].items())]
    lines += [""] + [f"![{f.stem}]({f.name})" for f in figures]
    p = profile
    lines += [
        "",
        f"## Chapter 07's GPT step under the profiler ({p['steps']} steps)",
        "",
        f"Step time {p['step_ms']:.1f} ms without the profiler, {p['step_ms_profiled']:.1f} ms "
        f"with it ({p['events_per_step']:.0f} events per step); Chrome trace: `{p['trace']}` "
        "(open it in https://ui.perfetto.dev).",
        "",
        "```",
        p["table"],
        "```",
    ]
    columns = ["benchmark", "what", "case", "time_ratio"]
    extra = dict(profile={k: v for k, v in p.items() if k != "table"}, meta=meta)
    if record:
        return bench.record("report", tag, columns, rows, "\n".join(lines), extra)
    saved, bench.RESULTS = bench.RESULTS, out
    try:  # the same files as a recorded run, in `out`
        return bench.write_results("report", tag, columns, rows, "\n".join(lines), extra)
    finally:
        bench.RESULTS = saved


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())
