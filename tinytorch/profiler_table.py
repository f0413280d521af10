"""tinytorch.profiler's summaries: events grouped by name (and input shapes), printed as a
table like torch.profiler's `key_averages().table()` (columns, time and memory formats)."""

from __future__ import annotations

SORT_KEYS = (
    "self_cpu_time_total",
    "cpu_time_total",
    "cpu_time",
    "count",
    "cpu_memory_usage",
    "self_cpu_memory_usage",
)


class KeyAverage:
    """The events of one name (and input shapes, when grouped by them), summed."""

    def __init__(self, key, kind, shapes):
        self.key, self.kind, self.input_shapes = key, kind, shapes
        self.count = 0
        self.cpu_time_total = self.self_cpu_time_total = 0.0  # microseconds
        self.cpu_memory_usage = self.self_cpu_memory_usage = 0  # bytes

    def add(self, ev) -> None:
        self.count += 1
        self.cpu_time_total += ev.cpu_time_total_us
        self.self_cpu_time_total += ev.self_cpu_time_total_us
        self.self_cpu_memory_usage += ev.bytes
        self.cpu_memory_usage += ev.bytes + ev.child_bytes

    @property
    def cpu_time(self) -> float:
        """Mean wall time per call, microseconds."""
        return self.cpu_time_total / max(self.count, 1)

    def __repr__(self):
        return (
            f"KeyAverage({self.key!r}, count={self.count}, "
            f"self_cpu_time_total={self.self_cpu_time_total:.1f} us)"
        )


class EventList(list):
    """A list of Events, or of KeyAverages after key_averages(); table() prints either."""

    def key_averages(self, group_by_input_shape: bool = False) -> EventList:
        groups: dict = {}
        for ev in self:
            shapes = str([list(s) for s in ev.shapes]) if group_by_input_shape else ""
            k = (ev.name, shapes)
            if k not in groups:
                groups[k] = KeyAverage(ev.name, ev.kind, shapes)
            groups[k].add(ev)
        out = EventList(groups.values())
        out._by_shape = group_by_input_shape
        return out

    def table(
        self,
        sort_by: str = "self_cpu_time_total",
        row_limit: int = 100,
        max_name_column_width: int = 55,
        header: str | None = None,
    ) -> str:
        """A text table like torch.profiler's: Name, Self CPU %, Self CPU, CPU total %, CPU
        total, CPU time avg, CPU Mem, Self CPU Mem, # of Calls (+ Input Shapes when grouped)."""
        if sort_by not in SORT_KEYS:
            raise ValueError(f"table: sort_by={sort_by!r}; expected one of {list(SORT_KEYS)}")
        averaged = self if all(isinstance(r, KeyAverage) for r in self) else self.key_averages()
        by_shape = getattr(averaged, "_by_shape", False)
        rows = sorted(averaged, key=lambda r: getattr(r, sort_by), reverse=True)
        total_self = sum(r.self_cpu_time_total for r in rows) or 1.0
        cols = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg"]
        cols += ["CPU Mem", "Self CPU Mem", "# of Calls"] + (["Input Shapes"] if by_shape else [])
        body = []
        for r in rows[: row_limit if row_limit and row_limit > 0 else None]:
            name = r.key
            if len(name) > max_name_column_width:
                name = name[: max_name_column_width - 3] + "..."
            line = [
                name,
                f"{100 * r.self_cpu_time_total / total_self:.2f}%",
                _fmt_us(r.self_cpu_time_total),
                f"{100 * r.cpu_time_total / total_self:.2f}%",
                _fmt_us(r.cpu_time_total),
                _fmt_us(r.cpu_time),
                _fmt_bytes(r.cpu_memory_usage),
                _fmt_bytes(r.self_cpu_memory_usage),
                str(r.count),
            ]
            body.append(line + ([r.input_shapes] if by_shape else []))
        widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(cols)]
        rule = "  ".join("-" * w for w in widths)

        def fmt(cells):  # right-aligned like torch's, the shapes left-aligned
            return "  ".join(
                c.ljust(w) if by_shape and i == len(cols) - 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            )

        lines = ([header] if header else []) + [rule, fmt(cols), rule, *map(fmt, body), rule]
        lines.append(f"Self CPU time total: {_fmt_us(total_self if rows else 0.0)}")
        return "\n".join(lines)


def _fmt_us(us: float) -> str:
    """torch.profiler's time format: 12.000us, 1.234ms, 2.000s."""
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


def _fmt_bytes(n: int) -> str:
    """torch.profiler's memory format: 512 b, 2.00 Kb, 1.50 Mb, 1.00 Gb."""
    for unit, size in (("Gb", 1 << 30), ("Mb", 1 << 20), ("Kb", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} b"
