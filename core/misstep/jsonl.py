"""Reading text files and JSON Lines records: one decoding path, errors that name the file and line.

Every text file misstep or a plugin reads (tasks, trajectories, corpora, released datasets, configs)
goes through :func:`text_lines`, :func:`read_text` or :func:`read_json`: a byte that is not UTF-8, a
line that is not JSON or a missing file is a :class:`DataError` saying where and what to do. Writes
are crash-safe: :func:`write_jsonl` replaces a file atomically, :class:`JsonlAppender` flushes each record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from misstep.errors import DataError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
BOM = b"\xef\xbb\xbf"

AllowEmpty = Annotated[bool, Field(
    description="accept an input file that holds no records (otherwise an empty file is an error)")]


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


@contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    """``path`` opened for binary reading; a missing or unreadable file is a DataError."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError("file not found; check the path", path=path) from None
    except OSError as error:
        raise DataError(f"cannot read the file: {error.strerror}", path=path) from None
    with handle:
        yield handle


def _decode(data: bytes, path: Path, line: int) -> str:
    """``data`` (starting at ``line`` of ``path``) as UTF-8 text; a bad byte is a DataError at its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line += data.count(b"\n", 0, error.start)
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise DataError(f"not UTF-8 text: byte 0x{data[error.start]:02x} at column {column}; save the file as "
                        "UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > NEW`)", path=path, line=line) from None


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 text file, streamed; a leading BOM is dropped."""
    path = Path(path)
    with _opened(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            yield number, _decode(raw, path, number)


def read_text(path: str | Path) -> str:
    """The whole text of a UTF-8 file (a leading BOM dropped); a bad byte is a DataError with its line."""
    path = Path(path)
    with _opened(path) as handle:
        data = handle.read()
    return _decode(data[len(BOM):] if data.startswith(BOM) else data, path, 1)


def _loads(text: str, path: Path, line: int | None) -> Any:
    """``text`` parsed as JSON; a syntax error or too deep nesting is a DataError at ``line``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = line if line is not None else error.lineno
        hint = "" if line is None or text.endswith("\n") else " (the last line is cut short: was a write interrupted?)"
        raise DataError(f"not valid JSON: {error.msg} (column {error.colno}){hint}", path=path, line=where) from None
    except RecursionError:
        raise DataError("JSON nested too deeply to read", path=path, line=line) from None


def read_json(path: str | Path) -> Any:
    """The JSON value a UTF-8 file holds; DataError names the file and line of what is wrong."""
    path = Path(path)
    return _loads(read_text(path), path, None)


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; a bad line is a DataError naming it."""
    for number, line in text_lines(path):
        if line.strip():
            yield number, _loads(line, path, number)


def nonempty(items: Iterable[T], path: str | Path, *, allow_empty: bool) -> Iterator[T]:
    """``items`` read from the input file ``path``; at their end, a DataError when there were none and
    ``allow_empty`` (the input's ``allow_empty:`` option) is false."""
    count = 0
    for item in items:
        count += 1
        yield item
    if count == 0 and not allow_empty:
        raise DataError("the file holds no records; fill it, or set `allow_empty: true` on this input if an "
                        "empty input is expected", path=path)


def validate_record(model: type[M], data: Any, *, path: str | Path, line: int | None = None) -> M:
    """``data`` as a ``model``; a mismatch is a DataError naming the file, line and field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise DataError(f"not a valid {model.__name__}: {_describe(error)}", path=path, line=line) from None


def read_jsonl(path: str | Path, model: type[M], *, allow_empty: bool = True) -> Iterator[M]:
    """Yield one ``model`` per non-blank line of ``path`` (misstep's own record files).

    A line that is not UTF-8 or JSON or does not fit ``model`` raises :class:`DataError` with the file
    and line number; nothing is skipped silently. ``allow_empty=False`` makes a file without records an
    error too (pass the input's ``allow_empty:`` option).
    """
    path = Path(path)
    for number, data in nonempty(_json_lines(path), path, allow_empty=allow_empty):
        yield validate_record(model, data, path=path, line=number)


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


def _starts_with(path: Path, char: bytes) -> bool:
    """Whether the first byte of ``path`` after a BOM and white space is ``char``."""
    with _opened(path) as handle:
        if handle.read(len(BOM)) != BOM:
            handle.seek(0)
        while (byte := handle.read(1)).isspace():
            pass
    return byte == char


def iter_json_rows(path: str | Path, *, allow_empty: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for a JSONL file, or (index + 1, object) for a file holding one JSON list.

    For input files in other projects' formats (datasets, corpora); ``allow_empty=False`` makes a file
    without rows a DataError (pass the input's ``allow_empty:`` option).
    """
    path = Path(path)
    rows = _json_list(path) if _starts_with(path, b"[") else _json_objects(path)
    yield from nonempty(rows, path, allow_empty=allow_empty)


def _json_list(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, item in enumerate(read_json(path), start=1):
        if not isinstance(item, dict):
            raise DataError(f"item {index} of the list is not a JSON object", path=path)
        yield index, item


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, row in _json_lines(path):
        if not isinstance(row, dict):
            raise DataError("expected a JSON object", path=path, line=number)
        yield number, row
