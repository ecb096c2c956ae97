"""``misstep sweep``: accuracy against the number of negatives, one line per method (NAT's Figure 1),
and the same comparison repeated over seeds.

A recipe's method chains (a ``reformat`` stage whose reformatter takes ``neg_num``, the ``train``
stages on its examples and the ``evaluate`` stages of those models) are copied once per ``neg_num``
value (the recipe's own chain serves its own value), renamed ``<stage>-neg<N>`` and appended to the
recipe, so the stages they share (collection, the student, Vanilla) run once and the whole sweep
resumes like any run. With seeds, every chain's training and evaluation is then repeated per seed
(:mod:`misstep_nat.seeds`) and each point is the mean over the seeds, with its spread. Vanilla's
accuracy, and that of each evaluation of a model no stage trained (the untrained one), are drawn as
flat reference lines. Writes ``sweep.csv`` (one line per run), ``sweep.md`` and
``sweep.png`` into the run folder."""

from __future__ import annotations

import copy
import csv
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import misstep

from misstep_nat.seeds import Spread, chains, label, repeat


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
    seed: int | None = None


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
    points = baselines(stages) + [Point(c.method, None, label(e)) for c in found
                                  if "neg_num" not in c.reformat["reformatter"] for e in c.evaluations]
    for value in values:
        for chain in swept:
            if chain.reformat["reformatter"]["neg_num"] == value:  # the recipe's own chain: nothing to add
                points.extend(Point(chain.method, value, label(e)) for e in chain.evaluations)
                continue
            suffix = f"-neg{value}"
            reformat = copy.deepcopy(chain.reformat)
            reformat["name"] = label(chain.reformat) + suffix
            reformat["reformatter"]["neg_num"] = value
            stages.append(reformat)
            for train in chain.trains:
                clone = {**copy.deepcopy(train), "name": label(train) + suffix, "examples": reformat["name"]}
                stages.append(clone)
            for evaluation in chain.evaluations:
                clone = {**copy.deepcopy(evaluation), "name": label(evaluation) + suffix,
                         "model": str(evaluation["model"]) + suffix}
                stages.append(clone)
                points.append(Point(chain.method, value, clone["name"]))
    return data, points


def collect_points(run: misstep.Run, points: list[Point], data: dict[str, Any]) -> list[Point]:
    """Fill each point's metrics from the finished run (what ``run_recipe`` returned), and the examples its reformat stage kept."""
    by_label = {label(s): s for s in data["stages"]}
    for point in points:
        point.accuracy = float(run.output(point.stage, "accuracy"))
        point.action_error_rate = float(run.output(point.stage, "action_error_rate"))
        point.avg_turns = float(run.output(point.stage, "avg_turns"))
        point.count = int(run.output(point.stage, "count"))
        examples = by_label.get(str(by_label[point.stage].get("model")), {}).get("examples")
        summary = run.output(str(examples), "summary", None) if examples else None
        if summary is not None:
            kept = misstep.read_json(summary).get("kept", {})
            point.positives, point.negatives = kept.get("positive"), kept.get("negative")
    return points


def baselines(stages: list[dict[str, Any]]) -> list[Point]:
    """A point per evaluation of a model that no stage of the recipe trains (the untrained model), named
    like the compare stage names it (``eval-untrained`` -> ``untrained``)."""
    trained = {label(s) for s in stages if s["use"] == "train"}
    return [Point(label(s).removeprefix("eval-"), None, label(s)) for s in stages
            if s["use"] == "evaluate" and s.get("model") not in trained]


def chain_points(data: dict[str, Any]) -> list[Point]:
    """The baselines, then a point per evaluation of every method chain, at the chain's own ``neg_num`` (None
    without negatives)."""
    return baselines(data["stages"]) + [Point(c.method, c.reformat["reformatter"].get("neg_num"), label(e))
                                        for c in chains(data["stages"]) for e in c.evaluations]


def seeded(data: dict[str, Any], points: list[Point], seeds: list[int]) -> tuple[dict[str, Any], list[Point]]:
    """The recipe with every chain repeated per seed, and each point once per seed."""
    data, runs = repeat(data, seeds)
    return data, [replace(point, stage=stage, seed=seed) for point in points
                  for seed, stage in runs.get(point.stage, [(None, point.stage)])]


def groups(points: list[Point]) -> dict[tuple[str, int | None], list[Point]]:
    """Points by (method, neg_num), in the order they first appear: the runs of one setting over the seeds."""
    grouped: dict[tuple[str, int | None], list[Point]] = {}
    for point in points:
        grouped.setdefault((point.method, point.neg_num), []).append(point)
    return grouped


def write_report(points: list[Point], folder: Path, title: str) -> dict[str, Path]:
    """``sweep.csv`` (one line per run), ``sweep.md`` (one line per setting: the mean over seeds, ± the sample
    standard deviation) and the plot ``sweep.png`` in ``folder``."""
    files = {"csv": folder / "sweep.csv", "table": folder / "sweep.md", "plot": folder / "sweep.png"}
    with files["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        writer.writerows(asdict(point) for point in points)
    lines = ["| method | neg_num | positives | negatives | runs | accuracy | action-error rate | avg turns |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (method, neg_num), runs in groups(points).items():
        first = runs[0]
        accuracy = Spread.of([p.accuracy for p in runs])
        errors = Spread.of([p.action_error_rate for p in runs])
        turns = Spread.of([p.avg_turns for p in runs])
        lines.append(f"| {method} | {_blank(neg_num)} | {_blank(first.positives)} | {_blank(first.negatives)} | "
                     f"{len(runs)} | {accuracy.percent()} | {100 * errors.mean:.2f}% | {turns.mean:.2f} |")
    files["table"].write_text("\n".join(lines) + "\n")
    _plot(points, files["plot"], title)
    return files


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def _plot(points: list[Point], path: Path, title: str) -> None:
    """Accuracy against neg_num, a line per method (bars by method when every method has one neg_num), error
    bars of one standard deviation over the seeds; methods without negatives as flat reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = groups(points)
    stats = {key: Spread.of([p.accuracy for p in runs]) for key, runs in grouped.items()}
    swept = {key: spread for key, spread in stats.items() if key[1] is not None}
    lines = len({neg_num for _, neg_num in swept}) > 1
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    if lines:
        for method in dict.fromkeys(method for method, _ in swept):
            series = sorted((n, spread) for (m, n), spread in swept.items() if m == method and n is not None)
            axis.errorbar([x for x, _ in series], [100 * s.mean for _, s in series],
                          yerr=[100 * s.sd for _, s in series], marker="o", capsize=3, label=method.upper())
        for (method, _), spread in ((key, s) for key, s in stats.items() if key[1] is None):
            trained = grouped[(method, None)][0].positives is not None
            axis.axhline(100 * spread.mean, linestyle="--", color="gray" if trained else "black",
                         label=f"{method.upper()} (no negatives)" if trained else method.upper())
        axis.set_xticks(sorted({n for _, n in swept if n is not None}))
        axis.set_xlabel("number of negatives (neg_num)")
    else:
        names = [method for method, _ in stats]
        bars = axis.bar(names, [100 * s.mean for s in stats.values()], yerr=[100 * s.sd for s in stats.values()],
                        capsize=4, color="#3b75af")
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
        for index, (method, neg_num) in enumerate(stats):
            runs = [100 * p.accuracy for p in grouped[(method, neg_num)]]
            axis.scatter([index] * len(runs), runs, color="black", s=10, zorder=3)
    low, high = axis.get_ylim()
    axis.set_ylim(max(low, -2), max(high, 5))  # no negative accuracies, and a readable scale when all are 0
    axis.set_ylabel("accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if lines:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
