"""The stage ``compare``: several evaluations side by side, as a table and a plot.

Each row is one ``evaluate`` stage: accuracy, the change against a ``baseline`` evaluation (the
untrained student, "before"), action-error rate, turns, and what the model was trained on (the
reformatter and examples recorded with it). Evaluations given the same label (the runs of one method
over several seeds, as ``misstep sweep --seeds`` sets them up) share one row of the table and one bar
of the plot: the mean, ± the sample standard deviation, with each run drawn as a dot. Writes
``comparison.md``, ``comparison.csv`` and ``comparison.json`` (one line per evaluation) and
``accuracy.png`` (matplotlib, Agg backend) into the stage folder.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import misstep
from pydantic import Field, model_validator

from misstep_nat.seeds import Spread


@dataclass
class Row:
    """One evaluation in the comparison."""

    method: str
    stage: str
    count: int
    accuracy: float
    action_error_rate: float
    avg_turns: float
    inference_prompt: str | None
    examples: int | None
    datasets: dict[str, float] = field(default_factory=dict)
    """Accuracy per dataset, when the evaluation had several (NAT reports their mean for math)."""
    runs: list[float] = field(default_factory=list)
    """The accuracy of each run a merged row stands for (empty for one evaluation)."""

    def cells(self, baseline: Row | None, datasets: list[str]) -> list[str]:
        delta = "" if baseline is None or baseline is self else f"{100 * (self.accuracy - baseline.accuracy):+.2f}"
        accuracy = Spread.of(self.runs).percent() if self.runs else f"{100 * self.accuracy:.2f}%"
        cells = [self.method, str(self.count), accuracy, delta,
                 f"{100 * self.action_error_rate:.2f}%", f"{self.avg_turns:.2f}",
                 "" if self.examples is None else str(self.examples), self.inference_prompt or ""]
        if datasets:
            cells += [_percent(self.datasets.get(name)) for name in datasets] + [_percent(self.dataset_mean)]
        return cells

    @property
    def dataset_mean(self) -> float | None:
        return sum(self.datasets.values()) / len(self.datasets) if self.datasets else None

    def flat(self) -> dict[str, Any]:
        """The row for the CSV: one accuracy column per dataset."""
        row = asdict(self)
        del row["datasets"], row["runs"]
        row.update({f"accuracy_{name}": value for name, value in self.datasets.items()})
        return row


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


HEADER = ["method", "tasks", "accuracy", "vs baseline (points)", "action-error rate", "avg turns",
          "trained on (examples)", "reformatter"]


def merged(rows: list[Row]) -> list[Row]:
    """One row per method: rows with the same label (runs over seeds) become their mean, in first-seen order."""
    by_method: dict[str, list[Row]] = {}
    for row in rows:
        by_method.setdefault(row.method, []).append(row)
    result = []
    for method, group in by_method.items():
        if len(group) == 1:
            result.append(group[0])
            continue
        datasets = {name: statistics.fmean(r.datasets[name] for r in group) for name in group[0].datasets}
        result.append(replace(
            group[0], stage=",".join(r.stage for r in group),
            accuracy=statistics.fmean(r.accuracy for r in group),
            action_error_rate=statistics.fmean(r.action_error_rate for r in group),
            avg_turns=statistics.fmean(r.avg_turns for r in group), datasets=datasets,
            runs=[r.accuracy for r in group]))
    return result


def dataset_names(rows: list[Row]) -> list[str]:
    return sorted({name for row in rows for name in row.datasets})


def markdown(rows: list[Row], baseline: Row | None) -> str:
    """The comparison table: one line per row (merge runs over seeds with :func:`merged` first)."""
    datasets = dataset_names(rows)
    header = HEADER if baseline else [h for h in HEADER if h != "vs baseline (points)"]
    if any(row.runs for row in rows):
        header = ["accuracy (mean ± sd)" if h == "accuracy" else h for h in header]
    if datasets:
        header = [*header, *datasets, "mean of datasets"]
    lines = ["| " + " | ".join(header) + " |", "| --- | " + " | ".join("---:" for _ in header[1:]) + " |"]
    for row in rows:
        cells = row.cells(baseline, datasets)
        if not baseline:
            del cells[3]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[Row], path: Path, title: str) -> Path:
    """A bar chart of accuracy by method, the action-error rate beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row.method for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(2.2 + 1.4 * len(rows), 3.6))
    spread = [100 * Spread.of(r.runs).sd if r.runs else 0.0 for r in rows]
    for axis, values, errors, label in ((left, [100 * r.accuracy for r in rows], spread, "accuracy (%)"),
                                        (right, [100 * r.action_error_rate for r in rows], None,
                                         "action-error rate (%)")):
        bars = axis.bar(names, values, yerr=errors if any(spread) and errors else None, capsize=4,
                        color=["#9e9e9e" if i == 0 else "#3b75af" for i in range(len(rows))])
        axis.bar_label(bars, fmt="%.1f", fontsize=8)
        if errors:
            for index, row in enumerate(rows):
                axis.scatter([index] * len(row.runs), [100 * a for a in row.runs], color="black", s=10, zorder=3)
        axis.set_ylabel(label)
        axis.set_ylim(0, max(100.0, max(values, default=0) * 1.1))
        axis.tick_params(axis="x", labelrotation=20)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


class Compare(misstep.Stage["Compare.Options"]):
    """Put evaluations side by side (accuracy, change vs the untrained model, action errors, turns) and plot them."""

    name = "compare"

    class Options(misstep.Options):
        evaluations: Annotated[list[str], misstep.StageInput()] = Field(
            min_length=1, description="earlier evaluate stages, one row each, in this order")
        baseline: Annotated[str | None, misstep.StageInput()] = Field(
            default=None, description="the evaluation the others are compared with (e.g. the untrained model)")
        labels: dict[str, str] = Field(
            default_factory=dict, description="row label per stage (default: the stage name without 'eval-')")
        title: str = "Accuracy on held-out tasks"

        @model_validator(mode="after")
        def _baseline_listed(self) -> Compare.Options:
            if self.baseline is not None and self.baseline not in self.evaluations:
                raise ValueError(f"baseline {self.baseline!r} must be one of the evaluations")
            return self

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        opts = self.options
        runs = [self._row(ctx, stage) for stage in opts.evaluations]
        rows = merged(runs)
        baseline = next(row for row in rows if opts.baseline in row.stage.split(",")) if opts.baseline else None
        table = markdown(rows, baseline)
        (ctx.dir / "comparison.md").write_text(table)
        with (ctx.dir / "comparison.csv").open("w", newline="") as handle:
            fields = [*runs[0].flat(), *(f"accuracy_{name}" for name in dataset_names(runs))]
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(fields)))
            writer.writeheader()
            writer.writerows(run.flat() for run in runs)
        (ctx.dir / "comparison.json").write_text(json.dumps(
            {"baseline": opts.baseline, "rows": [asdict(row) for row in rows], "runs": [asdict(run) for run in runs]},
            indent=2) + "\n")
        image = plot(rows, ctx.dir / "accuracy.png", opts.title)
        ctx.log("\n" + table)
        ctx.log(f"plot: {image}")
        outputs: dict[str, Any] = {"table": ctx.dir / "comparison.md", "csv": ctx.dir / "comparison.csv",
                                   "plot": image}
        outputs["accuracy"] = {row.method: row.accuracy for row in rows}
        return outputs

    def _row(self, ctx: misstep.StageContext, stage: str) -> Row:
        metrics_file = ctx.output(stage, "metrics")
        try:
            data = misstep.read_json(metrics_file)
            summary = data["metrics"]["all"]
            datasets = {name: float(m["accuracy"]) for name, m in data["metrics"].items() if name != "all"}
        except (misstep.DataError, KeyError, TypeError) as error:
            raise misstep.ComponentError(f"compare: {metrics_file} (stage {stage!r}) is not an evaluation's "
                                         f"metrics.json ({error!r}); is {stage!r} an evaluate stage?") from None
        return Row(
            method=self.options.labels.get(stage, stage.removeprefix("eval-")),
            stage=stage,
            count=int(summary["count"]),
            accuracy=float(summary["accuracy"]),
            action_error_rate=float(summary["action_error_rate"]),
            avg_turns=float(summary["avg_turns"]),
            inference_prompt=data.get("inference_prompt"),
            examples=_trained_examples(ctx, data.get("model")),
            datasets=datasets,
        )


def _trained_examples(ctx: misstep.StageContext, model: str | None) -> int | None:
    """How many examples the model was trained on, when a train stage of this run made it."""
    stage = (misstep.model_info(model) or {}).get("stage") if model else None
    examples = ctx.output(stage, "examples", None) if isinstance(stage, str) else None
    return examples if isinstance(examples, int) else None
