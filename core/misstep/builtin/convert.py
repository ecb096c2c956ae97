"""The ``misstep convert`` command: trajectories from one file format to another (docs/formats.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click

from misstep.datamodel import Trajectory
from misstep.errors import MisstepError
from misstep.formats import FORMATS, FieldMap, get_format, push_to_hub, read_rows, write_rows
from misstep.hookspecs import hookimpl


def _counted(trajectories: Iterator[Trajectory], labels: Counter[str]) -> Iterator[Trajectory]:
    for trajectory in trajectories:
        labels[trajectory.label] += 1
        yield trajectory


@hookimpl
def register_commands(cli: click.Group) -> None:
    names = click.Choice(list(FORMATS))

    @cli.command("convert")
    @click.argument("source", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
    @click.argument("target", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--from", "from_format", type=names, required=True, help="Format of INPUT.")
    @click.option("--to", "to_format", type=names, required=True, help="Format of OUTPUT.")
    @click.option("--messages-field", help="Field holding the messages (default: messages; sharegpt: conversations).")
    @click.option("--reward-field", default="reward", show_default=True, help="Field holding a float or bool reward.")
    @click.option("--success-threshold", type=float, default=1.0, show_default=True,
                  help="A reward at least this high is a success.")
    @click.option("--label-field",
                  help="Field holding a success label (bool, 0/1, positive/negative, success/failure).")
    @click.option("--task-field", default="task_id", show_default=True, help="Field naming the task.")
    @click.option("--trial-field", help="Field numbering a task's trials (default: their order).")
    @click.option("--id-field", default="id", show_default=True, help="Field holding the trajectory id.")
    @click.option("--tools", "tools", type=click.Path(dir_okay=False, path_type=Path),
                  help="JSON file with a list of tool schemas for records that carry none.")
    @click.option("--pairs-per-task", type=click.IntRange(min=1), help="trl-dpo: at most N pairs per task (seeded).")
    @click.option("--margin", type=float, help="trl-dpo: least reward difference between chosen and rejected.")
    @click.option("--seed", type=int, help="trl-dpo: seed of the pair draw.")
    @click.option("--push-to-hub", "repo", metavar="REPO", help="Also upload OUTPUT's records as a Hub dataset.")
    def convert(source: Path, target: Path, from_format: str, to_format: str, messages_field: str | None,
                reward_field: str, success_threshold: float, label_field: str | None, task_field: str,
                trial_field: str | None, id_field: str, tools: Path | None, pairs_per_task: int | None,
                margin: float | None, seed: int | None, repo: str | None) -> None:
        """Convert trajectories in INPUT (JSONL, JSON list, Parquet or CSV) to OUTPUT in another format.

        Formats: misstep, openai, sharegpt, trl-sft, trl-dpo, trl-kto (see docs/formats.md). Fields the
        mapping does not name stay with each record; converting back with the same flags restores them.
        """
        pairing = {key: value for key, value in (("per_task", pairs_per_task), ("margin", margin), ("seed", seed))
                   if value is not None}
        if pairing and to_format != "trl-dpo":
            raise MisstepError("--pairs-per-task, --margin and --seed apply only to --to trl-dpo")
        fields = FieldMap(messages_field=messages_field, reward_field=reward_field or None,
                          success_threshold=success_threshold, label_field=label_field,
                          task_field=task_field or None, trial_field=trial_field, id_field=id_field, tools=tools)
        labels: Counter[str] = Counter()
        trajectories = _counted(get_format(from_format).read(read_rows(source), fields, source), labels)
        rows = list(get_format(to_format).write(trajectories, fields, **pairing))
        count = write_rows(target, rows)
        click.echo(f"{sum(labels.values())} trajectories ({labels['positive']} positive, {labels['negative']} "
                   f"negative, {labels['unknown']} unlabelled) -> {count} {to_format} records in {target}")
        if repo:
            push_to_hub(rows, repo)
            click.echo(f"pushed {count} records to the Hugging Face Hub dataset {repo}")
