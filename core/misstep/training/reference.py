"""The reference model's log-probabilities, computed once before training, for losses with ``uses_reference``.

DPO and KTO compare the policy with a fixed reference: the model the train stage starts from (the ``init``
stage's model with its adapter, or the recipe's model). Instead of holding a second copy during training,
:func:`attach_reference` scores every continuation of the encoded dataset with the model before its first
update and stores the sums beside the data (``reference.jsonl`` next to ``dataset.jsonl``); each row's
``reference`` then comes with its batch. With a new LoRA adapter the scoring runs with the adapter disabled:
the base model, which is also what the zero-initialised adapter computes before training.

The file is appended to batch by batch, so a re-run after a crash keeps the rows already scored; each line
holds a hash of its row's tokens, and a row whose tokens changed is scored again. In a distributed run each
process scores its share of the batches (a DeepSpeed ZeRO-3 model is gathered whole for it first) and the
first process writes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from misstep.jsonl import JsonlAppender, iter_json_rows
from misstep.training.continuations import ContinuationFeatures, collate_continuations, continuation_scores

REFERENCE_FILE = "reference.jsonl"


class ReferenceLine(BaseModel):
    """The reference log-probability of each continuation of one dataset row."""

    model_config = ConfigDict(extra="forbid")

    row: int
    key: str  # a hash of the row's tokens
    logps: list[float]


def row_key(row: ContinuationFeatures) -> str:
    """A short hash of a row's tokens and trained flags."""
    text = json.dumps([row["prompt_ids"], row["candidate_ids"], row["candidate_trained"]])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def stored(path: Path, rows: Sequence[ContinuationFeatures]) -> dict[int, list[float]]:
    """The reference log-probabilities already in ``path`` for rows whose tokens are unchanged."""
    if not path.is_file():
        return {}
    found = {}
    for _, data in iter_json_rows(path):
        line = ReferenceLine.model_validate(data)
        if line.row < len(rows) and line.key == row_key(rows[line.row]):
            found[line.row] = line.logps
    return found


def score(model: Any, rows: Sequence[ContinuationFeatures], device: Any) -> list[list[float]]:
    """Each row's summed log-probability of each of its continuations (no gradient)."""
    import torch

    batch = collate_continuations(rows)
    batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    with torch.no_grad():
        sums = continuation_scores(model, batch).per_example().view_as(batch["rewards"]).cpu()
    return [sums[index, : len(row["candidate_ids"])].tolist() for index, row in enumerate(rows)]


@contextlib.contextmanager
def reference_mode(model: Any, disable_adapter: bool) -> Iterator[None]:
    """The model as the reference: in eval mode, without gradients, its new LoRA adapter disabled, a DeepSpeed
    ZeRO-3 model's partitioned weights gathered."""
    with contextlib.ExitStack() as stack:
        if disable_adapter:
            stack.enter_context(model.disable_adapter())
        partitioned = [parameter for parameter in model.parameters() if hasattr(parameter, "ds_id")]
        if partitioned:
            import deepspeed

            stack.enter_context(deepspeed.zero.GatheredParameters(partitioned))
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)


def _scored(model: Any, rows: Sequence[ContinuationFeatures], missing: list[int], batch_size: int, device: Any,
            rank: int, world: int) -> Iterator[tuple[int, list[float]]]:
    """(row, sums) for each of the ``missing`` rows, in batches: each of the ``world`` processes scores every
    ``world``-th batch, and every process gets every result."""
    import torch.distributed as dist

    batches = [missing[start:start + batch_size] for start in range(0, len(missing), batch_size)]
    for first in range(0, len(batches), world):
        mine = batches[first + rank] if first + rank < len(batches) else []
        done = [(mine, score(model, [rows[index] for index in mine], device) if mine else [])]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, done[0])
            done = gathered
        for indices, logps in done:
            yield from zip(indices, logps)


def attach_reference(rows: Sequence[ContinuationFeatures], model: Any, *, folder: Path, batch_size: int,
                     device: Any, disable_adapter: bool, autocast: Any = None,
                     log: Callable[[str], None] = print) -> None:
    """Set ``reference`` on every row: scored with ``model`` (see the module docstring), or read from
    ``folder / reference.jsonl`` where an earlier run scored it. ``autocast`` is the dtype training computes in
    under autocast (None: none), so that the reference is scored as the policy is."""
    import torch
    import torch.distributed as dist

    path = folder / REFERENCE_FILE
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    with contextlib.ExitStack() as stack:
        # the first process writes; opening the file sets a line cut short by a crash aside
        appender = stack.enter_context(JsonlAppender(path)) if rank == 0 else None
        if distributed:
            dist.barrier()
        values = stored(path, rows)
        if distributed:
            dist.barrier()  # every process has read the file before the first one appends to it
        missing = [index for index in range(len(rows)) if index not in values]
        if missing:
            log(f"scoring {len(missing)} of {len(rows)} examples with the reference model"
                + (f" ({len(rows) - len(missing)} already scored)" if values else ""))
            stack.enter_context(reference_mode(model, disable_adapter))
            if autocast is not None:
                stack.enter_context(torch.autocast(torch.device(device).type, dtype=autocast))
        for index, sums in _scored(model, rows, missing, batch_size, device, rank, world):
            values[index] = sums
            if appender is not None:
                appender.write(ReferenceLine(row=index, key=row_key(rows[index]), logps=sums))
    for index, row in enumerate(rows):
        row["reference"] = values[index]
