"""The ``misstep`` format: misstep's own trajectory records (:class:`misstep.Trajectory`), one per line.

Lossless: it holds everything misstep knows (verdict, provenance, training attributes of each message).
The field mapping does not apply, except ``tools`` for trajectories that carry none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from misstep.datamodel import Trajectory
from misstep.formats.fields import FieldMap, load_tools
from misstep.jsonl import validate_record


def read(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path) -> Iterator[Trajectory]:
    tools = load_tools(fields.tools)
    for line, row in rows:
        trajectory = validate_record(Trajectory, row, path=path, line=line)
        yield trajectory if trajectory.tools or not tools else trajectory.model_copy(update={"tools": tools})


def write(trajectories: Iterable[Trajectory], fields: FieldMap) -> Iterator[dict[str, Any]]:
    for trajectory in trajectories:
        yield trajectory.model_dump(mode="json")
