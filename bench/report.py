"""Side-by-side tables: name | ours | anchor | ratio | target | result.

`ratio` is always ours / anchor, measured in the same run. A target is either on the ratio
(">= 10x") or on our own value ("< 5 ms"); rows without a target are shown for context.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    text: str
    on: str  # "ratio" or "ours"
    op: str  # ">=", ">", "<=", "<"
    limit: float

    def met(self, ours: float | None, ratio: float | None) -> bool | None:
        value = ratio if self.on == "ratio" else ours
        if value is None or math.isnan(value):
            return None
        return {
            ">=": value >= self.limit,
            ">": value > self.limit,
            "<=": value <= self.limit,
            "<": value < self.limit,
        }[self.op]


def ratio_at_least(limit: float) -> Target:
    return Target(f">= {limit:g}x", "ratio", ">=", limit)


def ours_below(limit: float, unit: str) -> Target:
    return Target(f"ours < {limit:g} {unit}", "ours", "<", limit)


@dataclass(frozen=True)
class Row:
    name: str
    ours: float | None
    anchor: float | None
    unit: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.anchor is None or self.anchor == 0:
            return None
        return self.ours / self.anchor

    @property
    def verdict(self) -> bool | None:
        """True met, False missed, None no target (or nothing measured)."""
        if self.target is None:
            return None
        return self.target.met(self.ours, self.ratio)


@dataclass
class Table:
    title: str
    anchor_name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def missed(self) -> list[Row]:
        return [r for r in self.rows if r.target is not None and r.verdict is not True]

    def render(self) -> str:
        header = ("", "ours", f"anchor: {self.anchor_name}", "ratio", "target", "")
        lines = [
            (
                r.name + (f" ({r.unit})" if r.unit else ""),
                fmt(r.ours),
                fmt(r.anchor),
                "-" if r.ratio is None else f"{fmt(r.ratio)}x",
                r.target.text if r.target else "",
                _word(r),
            )
            for r in self.rows
        ]
        widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
        aligns = ("<", ">", ">", ">", "<", "<")

        def join(cells: Sequence[str]) -> str:
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True)).rstrip()

        rule = "-" * len(join(["x" * w for w in widths]))
        out = [f"== {self.title}", join(header), rule, *(join(c) for c in lines)]
        out += [f"   {n}" for n in self.notes if n]
        for r in self.rows:
            if r.note:
                out.append(f"   {r.name}: {r.note}")
        return "\n".join(out)


def _word(row: Row) -> str:
    verdict = row.verdict
    if row.target is None:
        return ""
    return {True: "PASS", False: "FAIL", None: "n/a"}[verdict]


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan
