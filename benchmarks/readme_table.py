"""README's generated results table, from the recorded result files (never typed by hand).

    python -m benchmarks.readme_table           # rewrite README.md between the markers
    python -m benchmarks.readme_table --check   # exit 1 if README.md differs from the files

Reads the JSON files directly under benchmarks/results/ (the standalone recorded runs; the
suite's own shorter runs under suite_<device>/ are not read) and writes one row per comparison
with tinytorch against PyTorch: the time ratio tinytorch / PyTorch of each case
(benchmarks/report.py's `ratios`), the date and the file. tests/test_ch12_readme.py checks
that README.md holds exactly this output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.report import WHAT, gmean, ratios

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- BEGIN GENERATED: python -m benchmarks.readme_table -->"
END = "<!-- END GENERATED -->"
ORDER = list(WHAT)  # rows in this order, then the profiler's overhead


def _cases(pairs) -> str:
    if len(pairs) <= 4:
        return ", ".join(f"{c}: {r:.2f}x" if c != "step" else f"{r:.2f}x" for c, r in pairs)
    values = [r for _, r in pairs]
    lo, hi = min(pairs, key=lambda p: p[1]), max(pairs, key=lambda p: p[1])
    return (
        f"{min(values):.2f}x ({lo[0]}) to {max(values):.2f}x ({hi[0]}), geometric mean "
        f"{gmean(values):.2f}x over {len(values)} cases"
    )


def table(results: Path = RESULTS) -> str:
    """The markdown table (without the markers) from the files in `results`."""
    found = {}
    for path in sorted(results.glob("*.json")):
        payload = json.loads(path.read_text())
        name = payload.get("name", "")
        if name in WHAT and ratios(payload):
            found[name] = (path.name, payload)
    lines = [
        "**tinytorch against PyTorch, generated from the result files** (`python -m "
        "benchmarks.readme_table`; each ratio is tinytorch's time / PyTorch's in the same run; "
        '"timed" says whether both ran in one process or each in its own (chapter 12, section '
        "1); chapter 12's `report_<device>.md` has the whole suite):",
        "",
        "| benchmark | time ratio tinytorch / PyTorch (< 1: faster) | timed | device | date "
        "| file |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(found, key=ORDER.index):
        file, payload = found[name]
        device = payload.get("machine", {}).get("gpu") or payload.get("machine", {}).get(
            "cpu_model", payload.get("device", "")
        )
        lines.append(
            f"| {WHAT[name]} | {_cases(ratios(payload))} | {payload.get('timing', 'one process')} "
            f"| {device} | "
            f"{payload.get('date', '')} | `{file}` |"
        )
    overhead = results / "profiler_overhead_cpu_cpu.json"
    if overhead.is_file():
        payload = json.loads(overhead.read_text())
        rows = {r["variant"]: r for r in payload["rows"]}
        hooks, none = rows["hooks"], rows["no hooks"]
        lines.append(
            f"| profiler hooks compiled in, no profile active, chapter 07 GPT step (tinytorch "
            f"against itself without the hooks) | {hooks['vs_no_hooks']:.3f}x (spread "
            f"{hooks['min_ms']:.1f}-{hooks['max_ms']:.1f} ms vs {none['min_ms']:.1f}-"
            f"{none['max_ms']:.1f} ms) | alternating child processes | "
            f"{payload['machine'].get('cpu_model', 'cpu')} | "
            f"{payload['date']} | `{overhead.name}` |"
        )
    return "\n".join(lines)


def rewrite(text: str, generated: str) -> str:
    """`text` (README.md) with the part between the markers replaced by `generated`."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = p.parse_args(argv)
    text = README.read_text()
    new = rewrite(text, table())
    if args.check:
        if new != text:
            print("README.md's generated table differs: run python -m benchmarks.readme_table")
            return 1
        print("README.md's generated table is up to date")
        return 0
    README.write_text(new)
    print(f"rewrote the table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
