"""Trajectory file formats: misstep's own records and the chat formats other tools write and read.

Each format turns file records into :class:`~misstep.Trajectory` objects and back, with the field mapping
of :class:`FieldMap`. ``misstep convert`` and the ``trajectories`` source use them; docs/formats.md shows
each with an example and says what survives a round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from misstep.datamodel import Trajectory
from misstep.errors import DataError
from misstep.formats import native, openai, sharegpt, trl
from misstep.formats.fields import FieldMap
from misstep.formats.files import push_to_hub, read_rows, write_rows

Rows = Iterable[tuple[int, dict[str, Any]]]
FormatName = Literal["misstep", "openai", "sharegpt", "trl-sft", "trl-dpo", "trl-kto"]
"""The formats' names, for options that take one (``FORMATS`` holds the same names)."""


@dataclass(frozen=True)
class Format:
    """A file format: ``read`` turns (line, record) pairs into trajectories, ``write`` trajectories into records."""

    name: str
    summary: str
    read: Callable[[Rows, FieldMap, Path], Iterator[Trajectory]]
    write: Callable[..., Iterator[dict[str, Any]]]


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("misstep", "misstep's trajectory records (lossless)", native.read, native.write),
    Format("openai", "OpenAI chat messages per trajectory, call arguments as JSON strings", openai.read, openai.write),
    Format("sharegpt", "LLaMA-Factory's from/value turns with function_call and observation", sharegpt.read,
           sharegpt.write),
    Format("trl-sft", "TRL conversational: messages + tools, call arguments as objects", trl.read_sft, trl.write_sft),
    Format("trl-dpo", "TRL preference pairs: prompt, chosen, rejected (a success and a failure per pair)",
           trl.read_dpo, trl.write_dpo),
    Format("trl-kto", "TRL unpaired preferences: prompt, completion, label", trl.read_kto, trl.write_kto),
)}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise DataError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def read_trajectories(path: Path, format: str, fields: FieldMap | None = None, *,
                      allow_empty: bool = True) -> Iterator[Trajectory]:
    """The trajectories of a file in ``format`` (JSONL, JSON list, Parquet or CSV); ``allow_empty=False``
    makes a file without records a DataError."""
    return get_format(format).read(read_rows(path, allow_empty=allow_empty), fields or FieldMap(), path)


def write_trajectories(path: Path, trajectories: Iterable[Trajectory], format: str, fields: FieldMap | None = None,
                       **options: Any) -> int:
    """Write ``trajectories`` to ``path`` in ``format``; ``options`` go to the format's writer (``trl-dpo``:
    ``per_task``, ``margin``, ``seed``). Returns how many records were written."""
    return write_rows(path, get_format(format).write(trajectories, fields or FieldMap(), **options))


__all__ = ["FORMATS", "FieldMap", "Format", "FormatName", "get_format", "push_to_hub", "read_rows", "read_trajectories",
           "write_rows", "write_trajectories"]
