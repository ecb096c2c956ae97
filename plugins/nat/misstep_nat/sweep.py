"""``misstep sweep``: accuracy against the number of negatives, one line per method (NAT's Figure 1).

A recipe's method chains (a ``reformat`` stage whose reformatter takes ``neg_num``, the ``train``
stages on its examples and the ``evaluate`` stages of those models) are copied once per ``neg_num``
value (the recipe's own chain serves its own value), renamed ``<stage>-neg<N>`` and appended to the
recipe, so the stages they share (collection, the student, Vanilla) run once and the whole sweep
resumes like any run. Vanilla's accuracy is drawn as a flat reference line. Writes ``sweep.csv``,
``sweep.md`` and ``sweep.png`` into the run folder."""

from __future__ import annotations

import copy
import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import misstep


@dataclass
class Point:
    """One evaluation of the sweep."""

    method: str
    neg_num: int | None
    stage: str
    accuracy: float = 0.0
    action_error_rate: float = 0.0
    avg_turns: float = 0.0
    count: int = 0
    positives: int | None = None
    negatives: int | None = None


def _label(stage: dict[str, Any]) -> str:
    return str(stage.get("name") or stage["use"])


@dataclass
class Chain:
    """A method's stages: its reformat stage, the train stages on it, the evaluations of those."""

    method: str
    reformat: dict[str, Any]
    trains: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]


def chains(stages: list[dict[str, Any]]) -> list[Chain]:
    """Every reformat -> train -> evaluate chain of a recipe's (dumped) stages."""
    found = []
    for stage in stages:
        reformatter = stage.get("reformatter")
        if stage["use"] != "reformat" or not isinstance(reformatter, dict):
            continue
        trains = [s for s in stages if s["use"] == "train" and s.get("examples") == _label(stage)]
        names = {_label(t) for t in trains}
        evaluations = [s for s in stages if s["use"] == "evaluate" and s.get("model") in names]
        if evaluations:
            found.append(Chain(str(reformatter["use"]), stage, trains, evaluations))
    return found


def expand(data: dict[str, Any], values: list[int], methods: list[str] | None) -> tuple[dict[str, Any], list[Point]]:
    """The recipe with a copy of each swept chain per ``neg_num`` value, and the points to read afterwards.

    Swept: chains whose reformatter takes ``neg_num`` (NUT, NAT, NAT-k), or those named in ``methods``.
    Chains without negatives (Vanilla) stay as they are and become reference points (``neg_num`` None).
    """
    data = copy.deepcopy(data)
    stages: list[dict[str, Any]] = data["stages"]
    found = chains(stages)
    swept = [c for c in found if "neg_num" in c.reformat["reformatter"] and (methods is None or c.method in methods)]
    if methods is not None and (missing := set(methods) - {c.method for c in swept}):
        raise misstep.MisstepError(
            f"sweep: the recipe has no reformat -> train -> evaluate chain with negatives for {', '.join(sorted(missing))} "
            f"(chains found: {', '.join(c.method for c in found) or 'none'})")
    if not swept:
        raise misstep.MisstepError("sweep: the recipe has no reformat stage with `neg_num` (nut, nat, nat-k) followed "
                                   "by a train and an evaluate stage; nothing to sweep")
    points = [Point(c.method, None, _label(e)) for c in found if "neg_num" not in c.reformat["reformatter"]
              for e in c.evaluations]
    for value in values:
        for chain in swept:
            if chain.reformat["reformatter"]["neg_num"] == value:  # the recipe's own chain: nothing to add
                points.extend(Point(chain.method, value, _label(e)) for e in chain.evaluations)
                continue
            suffix = f"-neg{value}"
            reformat = copy.deepcopy(chain.reformat)
            reformat["name"] = _label(chain.reformat) + suffix
            reformat["reformatter"]["neg_num"] = value
            stages.append(reformat)
            for train in chain.trains:
                clone = {**copy.deepcopy(train), "name": _label(train) + suffix, "examples": reformat["name"]}
                stages.append(clone)
            for evaluation in chain.evaluations:
                clone = {**copy.deepcopy(evaluation), "name": _label(evaluation) + suffix,
                         "model": str(evaluation["model"]) + suffix}
                stages.append(clone)
                points.append(Point(chain.method, value, clone["name"]))
    return data, points


def collect_points(run: misstep.Run, points: list[Point], data: dict[str, Any]) -> list[Point]:
    """Fill each point's metrics from the finished run (what ``run_recipe`` returned), and the examples its reformat stage kept."""
    by_label = {_label(s): s for s in data["stages"]}
    for point in points:
        point.accuracy = float(run.output(point.stage, "accuracy"))
        point.action_error_rate = float(run.output(point.stage, "action_error_rate"))
        point.avg_turns = float(run.output(point.stage, "avg_turns"))
        point.count = int(run.output(point.stage, "count"))
        train = by_label.get(str(by_label[point.stage].get("model")), {})
        summary = run.output(str(train.get("examples")), "summary", None)
        if summary is not None:
            kept = misstep.read_json(summary).get("kept", {})
            point.positives, point.negatives = kept.get("positive"), kept.get("negative")
    return points


def write_report(points: list[Point], folder: Path, title: str) -> dict[str, Path]:
    """``sweep.csv``, ``sweep.md`` and the plot ``sweep.png`` in ``folder``."""
    files = {"csv": folder / "sweep.csv", "table": folder / "sweep.md", "plot": folder / "sweep.png"}
    with files["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        writer.writerows(asdict(point) for point in points)
    lines = ["| method | neg_num | positives | negatives | accuracy | action-error rate | avg turns |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in points:
        lines.append(f"| {p.method} | {'' if p.neg_num is None else p.neg_num} | {_blank(p.positives)} | "
                     f"{_blank(p.negatives)} | {100 * p.accuracy:.2f}% | {100 * p.action_error_rate:.2f}% | "
                     f"{p.avg_turns:.2f} |")
    files["table"].write_text("\n".join(lines) + "\n")
    _plot(points, files["plot"], title)
    return files


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def _plot(points: list[Point], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    methods = list(dict.fromkeys(p.method for p in points if p.neg_num is not None))
    for method in methods:
        series = sorted((p.neg_num, 100 * p.accuracy) for p in points if p.method == method and p.neg_num is not None)
        axis.plot([x for x, _ in series], [y for _, y in series], marker="o", label=method.upper())
    for point in (p for p in points if p.neg_num is None):
        axis.axhline(100 * point.accuracy, linestyle="--", color="gray", label=f"{point.method.upper()} (no negatives)")
    axis.set_xlabel("number of negatives (neg_num)")
    axis.set_ylabel("accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
