"""JSON Lines storage for records: streaming reads that name the bad line, crash-safe appends."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from misstep.errors import DataError

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _json_lines(handle: IO[str], path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; a bad line is a DataError naming it."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            hint = "" if line.endswith("\n") else " (the last line is cut short: was a write interrupted?)"
            raise DataError(f"not valid JSON: {error.msg}{hint}", path=path, line=number) from None
        yield number, value


def read_jsonl(path: str | Path, model: type[M]) -> Iterator[M]:
    """Yield one ``model`` per non-blank line of ``path``.

    A line that is not JSON or does not fit ``model`` raises :class:`DataError` with the file and line
    number; nothing is skipped silently.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}", path=path)
    with path.open(encoding="utf-8") as handle:
        for number, data in _json_lines(handle, path):
            try:
                yield model.model_validate(data)
            except ValidationError as error:
                raise DataError(
                    f"not a valid {model.__name__}: {describe(error)}", path=path, line=number
                ) from None


def write_jsonl(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write ``records`` to ``path`` (replacing it atomically); return how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(dump_line(record))
            count += 1
    os.replace(tmp, path)
    return count


def dump_line(record: BaseModel) -> str:
    return record.model_dump_json(exclude_defaults=False) + "\n"


class JsonlAppender:
    """Appends records one at a time, flushed after each, so an interrupted job keeps what it wrote.

    On opening, a last line cut short by a crash is moved aside to ``<file>.partial`` (never deleted)
    so that the file stays readable and the record is simply produced again.
    """

    def __init__(self, path: str | Path, *, sync: bool = False) -> None:
        self.path = Path(path)
        self.sync = sync
        self.recovered: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def _repair_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("ab") as handle:
            handle.write(data[cut:] + b"\n")
        with self.path.open("r+b") as handle:
            handle.truncate(cut)
        self.recovered = str(partial)

    def write(self, record: BaseModel) -> None:
        self._handle.write(dump_line(record))
        self._handle.flush()
        if self.sync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for a JSONL file, or (index + 1, object) for a file holding one JSON list."""
    if not path.exists():
        raise DataError("file not found", path=path)
    with path.open(encoding="utf-8") as handle:
        first = handle.read(1)
        while first and first.isspace():
            first = handle.read(1)
        handle.seek(0)
        if first == "[":
            try:
                items = json.load(handle)
            except json.JSONDecodeError as error:
                raise DataError(f"not valid JSON: {error.msg}", path=path, line=error.lineno) from None
            for index, item in enumerate(items, start=1):
                if not isinstance(item, dict):
                    raise DataError(f"item {index} is not an object", path=path)
                yield index, item
            return
        for number, row in _json_lines(handle, path):
            if not isinstance(row, dict):
                raise DataError("expected a JSON object", path=path, line=number)
            yield number, row
