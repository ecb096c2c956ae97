"""One evaluation summary for every evaluate stage: metrics overall and per group, a Markdown table, files.

A summary is ``{"all": {metric: value}, "<group>": {...}, ...}`` (the groups are datasets for the agent
and TRICE, difficulties for TriPosT). :func:`grouped_metrics` makes it from any rows and a function that
summarises a list of them; :func:`markdown_table` shows it, one row per group and ``all`` last, one
column per metric; :func:`save_metrics` writes ``metrics.json`` and ``metrics.md`` into a stage folder.
Every stage's ``metrics.json`` has the same shape, ``{..., "metrics": summary}``, so a comparison can
read any of them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

ALL = "all"
SHARES = frozenset({"em", "f1", "exact_match"})  # shown as percentages, like *accuracy and *_rate
T = TypeVar("T")
Summary = dict[str, dict[str, Any]]


def grouped_metrics(rows: Iterable[T], group: Callable[[T], str], summarize: Callable[[list[T]], dict[str, Any]],
                    *, always: bool = False) -> Summary:
    """``{"all": summarize(rows), "<group>": summarize(its rows), ...}``, groups sorted by name; the groups
    are left out when there is only one, unless ``always``."""
    groups: dict[str, list[T]] = defaultdict(list)
    everything: list[T] = []
    for row in rows:
        groups[group(row)].append(row)
        everything.append(row)
    result = {ALL: summarize(everything)}
    if always or len(groups) > 1:
        result.update({name: summarize(groups[name]) for name in sorted(groups)})
    return result


def is_share(metric: str) -> bool:
    """Whether a metric is a share shown as a percentage: accuracies, rates, EM and F1."""
    return metric in SHARES or metric.endswith("accuracy") or metric.endswith("_rate")


def markdown_table(result: Mapping[str, Mapping[str, Any]], *, label: str = "dataset",
                   first: Sequence[str] = ("count", "accuracy"),
                   last: Sequence[str] = ("action_error_rate", "avg_turns")) -> str:
    """The summary as a Markdown table: a row per group (``all`` last), a column per metric.

    Columns: those of ``first`` that appear, every other metric in the order it first appears, then
    those of ``last``. Integers are shown as they are, shares (:func:`is_share`) as percentages, other
    numbers with two decimals; a metric a group lacks is an empty cell.
    """
    seen: list[str] = []
    for summary in result.values():
        seen += [key for key in summary if key not in seen]
    columns = [c for c in first if c in seen] + [c for c in seen if c not in first and c not in last]
    columns += [c for c in last if c in seen]
    rows = [name for name in result if name != ALL] + ([ALL] if ALL in result else [])
    lines = [
        f"| {label} | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name in rows:
        lines.append(f"| {name} | " + " | ".join(_cell(column, result[name].get(column)) for column in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if is_share(column):
        return f"{100 * value:.2f}%"
    return f"{value:.2f}"


def save_metrics(folder: Path, result: Summary, *, info: Mapping[str, Any], title: str = "",
                 label: str = "dataset", first: Sequence[str] = ("count", "accuracy"),
                 last: Sequence[str] = ("action_error_rate", "avg_turns")) -> tuple[Path, Path, str]:
    """Write ``metrics.json`` (``info`` and ``"metrics": result``) and ``metrics.md`` (``title``, then the
    table) into ``folder``; return both paths and the table."""
    metrics_path, table_path = folder / "metrics.json", folder / "metrics.md"
    metrics_path.write_text(json.dumps({**info, "metrics": result}, indent=2))
    table = markdown_table(result, label=label, first=first, last=last)
    table_path.write_text(f"{title}\n\n{table}" if title else table)
    return metrics_path, table_path, table
