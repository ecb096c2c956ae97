"""Which checkpoints a training run can resume from, when a kill may have left the newest half-written.

The Trainer writes a ``checkpoint-N`` folder file by file and ``trainer_state.json`` last, so a kill
(-9, out of memory, power) in the middle leaves a folder without it, or with a file cut short. A
checkpoint is complete when ``trainer_state.json`` reads, it holds weights, and every weights, torch
and JSON file in it is whole; a resume takes the newest complete one and skips (and names) the others.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from misstep.errors import DataError
from misstep.jsonl import read_json

STATE = "trainer_state.json"  # written last by the Trainer
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TORCH_FILES = (".bin", ".pt", ".pth")  # torch.save writes zip archives; a cut one has no central directory


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else size
        if 8 + length > size:
            return f"cut short ({size} bytes, shorter than its header)"
        try:
            header = json.loads(handle.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError):
            return "its header is not valid"
    if 8 + length + end != size:
        return f"cut short ({size} of {8 + length + end} bytes)"
    return None


def file_problem(path: Path) -> str | None:
    """Why a weights, torch or JSON file is not whole (None when it is, or is of another kind)."""
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix in TORCH_FILES:
        return None if zipfile.is_zipfile(path) else "cut short (not a complete torch archive)"
    if path.suffix == ".json":
        try:
            read_json(path)
        except DataError as error:
            return error.message
    return None


def _holds_weights(folder: Path) -> bool:
    weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.name != "training_args.bin"]
    return bool(weights) or any(p.is_dir() and p.name.startswith("global_step") for p in folder.iterdir())


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a checkpoint to resume from (None when it is complete)."""
    if not (folder / STATE).is_file():
        return f"no {STATE} (the Trainer writes it last: the save was interrupted)"
    if not _holds_weights(folder):
        return "no weights file"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        problem = file_problem(path)
        if problem is not None:
            return f"{path.relative_to(folder)}: {problem}"
    return None


def last_complete_checkpoint(folder: Path) -> tuple[Path | None, list[str]]:
    """The newest complete ``checkpoint-N`` in ``folder`` (None when there is none) and, for each newer
    incomplete one, a line saying why it was skipped."""
    if not folder.is_dir():
        return None, []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (match := CHECKPOINT.match(path.name))]
    skipped: list[str] = []
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(f"skipped the incomplete checkpoint {path.name}: {problem}")
    return None, skipped


def weights_problem(folder: Path) -> str | None:
    """Why a model or adapter folder's safetensors weights cannot load (a file cut short), or None."""
    for path in sorted(folder.glob("*.safetensors")):
        problem = file_problem(path)
        if problem is not None:
            return f"{path}: {problem}"
    return None
