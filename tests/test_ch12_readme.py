"""Chapter 12: README's generated results table equals what the result files say.

The table between the markers in README.md's "Measured results" is written by
`python -m benchmarks.readme_table` from benchmarks/results/*.json; this test fails when a
result file changed and the README was not regenerated (or the table was edited by hand).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ch12


@pytest.fixture
def readme_table(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))  # benchmarks/ is a package at the repository root
    from benchmarks import readme_table

    return readme_table


def test_readme_table_is_generated_from_the_result_files(readme_table):
    text = (REPO / "README.md").read_text()
    assert readme_table.BEGIN in text and readme_table.END in text
    expected = readme_table.rewrite(text, readme_table.table(REPO / "benchmarks" / "results"))
    assert text == expected, "README.md is stale: run `python -m benchmarks.readme_table`"


def test_rewrite_replaces_only_between_the_markers(readme_table):
    b, e = readme_table.BEGIN, readme_table.END
    text = f"# t\n\n## Measured results\n\nkept\n{b}\nold\n{e}\n\n## Layout\n"
    assert (
        readme_table.rewrite(text, "new")
        == f"# t\n\n## Measured results\n\nkept\n{b}\nnew\n{e}\n\n## Layout\n"
    )
    with pytest.raises(ValueError, match="markers"):
        readme_table.rewrite("no markers", "new")


def test_report_ratios_invert_speedups(readme_table):
    from benchmarks.report import ratios

    gelu = {"name": "gelu_cpu", "rows": [{"shape": "4x4", "vs_torch": 2.0}]}
    assert ratios(gelu) == [("4x4", 0.5)]  # twice PyTorch's speed = half its time
    gpt = {"name": "gpt_cpu", "rows": [{"framework": "tinytorch", "ratio vs torch": 1.2}]}
    assert ratios(gpt) == [("step", 1.2)]
    ops = {
        "name": "ops",
        "rows": [
            {"op": "add", "size": "8x8", "ratio": 2.0},
            {"op": "mul", "size": "8x8", "ratio": 0.5},
            {"op": "overhead (x + y, fwd only)", "size": "1", "ratio": 9.0},
        ],
    }
    assert ratios(ops) == [("8x8", pytest.approx(1.0))]  # geometric mean; no overhead row


def test_report_writes_markdown_json_and_figures(readme_table, tmp_path):
    from benchmarks import report

    att = [
        dict(
            T=t,
            causal=c,
            vs_torch=2.0,
            fused_fwdbwd_ms=t / 64,
            torch_fwdbwd_ms=t / 32,
            composed_fwdbwd_ms=(t / 64) ** 2,
        )  # fmt: skip
        for t in (64, 256)
        for c in (True, False)
    ]
    results = {
        "attention_cpu": [{"name": "attention_cpu", "rows": att}],
        "gpt_cpu": [
            {"name": "gpt_cpu", "rows": [{"framework": "tinytorch", "ratio vs torch": 1.5}]}
        ],
    }
    profile = dict(
        steps=2, step_ms=60.0, step_ms_profiled=65.0, events_per_step=250, trace="t.json",
        table="(table)",
        rows=[dict(name="MatMulBackward", kind="backward", self_ms_per_step=20.0)],
    )  # fmt: skip
    meta = dict(quick=True, seconds={"gpt_cpu": 3.0}, failed={}, threads={"torch_threads": 2},
                notes="", raw="raw")  # fmt: skip
    md = report.write(tmp_path, "cpu", results, profile, meta)
    text = md.read_text()
    assert md.name == "report_cpu.md" and "QUICK run" in text and "(table)" in text
    assert "| gpt_cpu | chapter 07 GPT training step (CPU) | step | 1.5 |" in text
    data = json.loads((tmp_path / "report_cpu.json").read_text())
    assert {r["case"]: r["time_ratio"] for r in data["rows"]}["T=64 causal"] == 0.5
    for fig in ("ratios", "attention_scaling", "gpt_profile"):
        png = tmp_path / f"report_cpu_{fig}.png"
        assert png.stat().st_size > 0 and f"({png.name})" in text


def test_suite_counts_only_the_files_a_benchmark_wrote(readme_table, tmp_path):
    """The previous benchmark's file, written just before, is not this one's (it once was)."""
    import os

    from benchmarks.suite import snapshot, written_since

    old = tmp_path / "gelu_cpu_cpu.json"
    old.write_text("{}")
    before = snapshot(tmp_path)
    assert written_since(tmp_path, before) == []
    new = tmp_path / "gpt_cpu_cpu.json"
    new.write_text("{}")
    os.utime(old, ns=(1, before[old]))  # untouched file, same mtime
    assert written_since(tmp_path, before) == [new]
    os.utime(old, ns=(1, before[old] + 1))  # rewritten
    assert written_since(tmp_path, before) == [old, new]
