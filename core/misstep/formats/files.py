"""Records from and to files: JSON Lines and JSON lists directly, Parquet and CSV through ``datasets``,
and a dataset repository on the Hugging Face Hub."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from misstep.errors import DataError, MisstepError
from misstep.jsonl import iter_json_rows, nonempty

OWN = (".jsonl", ".json")
THROUGH_DATASETS = {".parquet": "parquet", ".csv": "csv"}


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise MisstepError("Parquet and CSV files and --push-to-hub need the datasets library: "
                           "pip install 'misstep[datasets]'") from None
    return datasets


def read_rows(path: Path, *, allow_empty: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, record) for each record of a JSONL, JSON-list, Parquet or CSV file;
    ``allow_empty=False`` makes a file without records a DataError."""
    suffix = path.suffix.lower()
    if suffix in OWN:
        yield from iter_json_rows(path, allow_empty=allow_empty)
        return
    if suffix not in THROUGH_DATASETS:
        raise DataError(f"cannot read {suffix or 'files without an extension'}; use one of: "
                        f"{', '.join([*OWN, *THROUGH_DATASETS])}", path=path)
    if not path.is_file():
        raise DataError("file not found", path=path)
    table = _datasets().load_dataset(THROUGH_DATASETS[suffix], data_files=str(path), split="train")
    yield from nonempty(((number, dict(row)) for number, row in enumerate(table, start=1)), path,
                        allow_empty=allow_empty)


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write records to a JSONL, JSON-list, Parquet or CSV file (replaced atomically); return how many.

    CSV holds nested values (messages, tools) as JSON text, which reading parses back.
    """
    suffix = path.suffix.lower()
    if suffix not in (*OWN, *THROUGH_DATASETS):
        raise DataError(f"cannot write {suffix or 'files without an extension'}; use one of: "
                        f"{', '.join([*OWN, *THROUGH_DATASETS])}", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    records = list(rows)
    if suffix == ".jsonl":
        tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in records), encoding="utf-8")
    elif suffix == ".json":
        items = ",\n".join(json.dumps(row, ensure_ascii=False) for row in records)
        tmp.write_text(f"[\n{items}\n]\n" if records else "[]\n", encoding="utf-8")
    elif suffix == ".csv":
        flat = [{k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v for k, v in row.items()}
                for row in records]
        _datasets().Dataset.from_list(flat).to_csv(str(tmp), index=False)
    else:
        _datasets().Dataset.from_list(records).to_parquet(str(tmp))
    os.replace(tmp, path)
    return len(records)


def push_to_hub(rows: Iterable[dict[str, Any]], repo: str) -> int:
    """Upload records as a dataset repository ``repo``; needs a Hugging Face token and the network."""
    from huggingface_hub import get_token

    datasets = _datasets()
    if not get_token():
        raise MisstepError(f"--push-to-hub {repo} needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    records = list(rows)
    try:
        datasets.Dataset.from_list(records).push_to_hub(repo)
    except Exception as error:  # network, permissions, offline mode: all end the command the same way
        raise MisstepError(f"pushing to the Hugging Face Hub repository {repo} failed: {type(error).__name__}: "
                           f"{error}. Check the network, the token's write access and the repository name") from None
    return len(records)
