"""Batches of encoded examples: right-padded rows, or padding-free packed rows.

Both collators take encoded examples (anything with ``input_ids``, ``labels`` (-100 = masked) and
``weights`` (0 where masked), e.g. :class:`misstep.training.encode.Encoded`) and return the token
batch :mod:`misstep.training.token_loss` describes: tensors with unshifted labels, as transformers'
causal LMs expect, each token's ``example_index`` and the batch's ``examples`` (an example's
:class:`~misstep.training.token_loss.ExampleInfo` is its ``example`` attribute where it has one).

``collate_packed`` concatenates examples into rows with ``position_ids`` restarting at 0 for each
example and no ``attention_mask``. transformers (5.x) then detects the packed layout from the
position ids (``masking_utils.find_packed_sequence_indices``) and keeps attention inside each
example for ``eager``, ``sdpa`` and ``flex_attention``. Flash attention infers it from position ids
only for a single row (``modeling_flash_attention_utils._is_packed_sequence``), so packed batches
also carry the varlen arguments ``cu_seq_lens_q/k`` and ``max_length_q/k`` over the flattened rows,
which flash attention uses for any number of rows and the other implementations ignore. The first
label of every example is masked, so no token is trained to predict the next example's first token:
the loss over a packed batch equals the loss over the examples one by one.

transformers looks for packing only when the forward pass has no cache: call the model with
``use_cache=False`` (:func:`misstep.model_inputs` does), or the examples of a row silently attend to
each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from misstep.training.token_loss import IGNORE_INDEX, ExampleInfo


class Features(Protocol):
    """An encoded example: token ids with per-token labels and loss weights, all the same length."""

    @property
    def input_ids(self) -> Sequence[int]: ...

    @property
    def labels(self) -> Sequence[int]: ...

    @property
    def weights(self) -> Sequence[float]: ...


def _checked(features: Sequence[Features]) -> Sequence[Features]:
    if not features:
        raise ValueError("cannot collate an empty batch")
    for index, feature in enumerate(features):
        lengths = {len(feature.input_ids), len(feature.labels), len(feature.weights)}
        if len(lengths) != 1 or not feature.input_ids:
            raise ValueError(
                f"example {index} of the batch has input_ids/labels/weights of lengths {len(feature.input_ids)}/"
                f"{len(feature.labels)}/{len(feature.weights)}: they must be equal and non-zero"
            )
    return features


def _examples(features: Sequence[Features]) -> list[ExampleInfo]:
    """Each feature's ``example`` (an :class:`ExampleInfo`), or one that knows only its position."""
    return [getattr(feature, "example", None) or ExampleInfo(id=str(index)) for index, feature in enumerate(features)]


def _rows(shape: tuple[int, int], pad_id: int) -> dict[str, torch.Tensor]:
    """Empty rows: ``pad_id`` tokens, label -100, weight 0, no example (-1)."""
    return {
        "input_ids": torch.full(shape, pad_id, dtype=torch.long),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=torch.long),
        "weights": torch.zeros(shape, dtype=torch.float32),
        "example_index": torch.full(shape, -1, dtype=torch.long),
    }


def collate_padded(features: Sequence[Features], pad_id: int) -> dict[str, Any]:
    """Right-pad examples to the longest: ``input_ids``, ``attention_mask``, ``labels``, ``weights``,
    ``example_index`` (row r holds example r) and ``examples``.

    Padding carries ``pad_id``, attention 0, label -100, weight 0 and example -1.
    """
    features = _checked(features)
    width = max(len(f.input_ids) for f in features)
    shape = (len(features), width)
    batch = _rows(shape, pad_id) | {"attention_mask": torch.zeros(shape, dtype=torch.long)}
    for row, feature in enumerate(features):
        length = len(feature.input_ids)
        batch["input_ids"][row, :length] = torch.tensor(feature.input_ids, dtype=torch.long)
        batch["attention_mask"][row, :length] = 1
        batch["labels"][row, :length] = torch.tensor(feature.labels, dtype=torch.long)
        batch["weights"][row, :length] = torch.tensor(feature.weights, dtype=torch.float32)
        batch["example_index"][row, :length] = row
    return batch | {"examples": _examples(features)}


def pack_rows(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group example indices into rows of at most ``max_tokens`` tokens (first fit, longest first).

    An example longer than ``max_tokens`` gets a row of its own. Within a row and across rows,
    examples keep their order.
    """
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if row is None:
            rows.append([])
            room.append(max_tokens)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= lengths[index]
    return sorted(sorted(row) for row in rows)


def collate_packed(features: Sequence[Features], *, max_tokens: int | None = None,
                   pad_id: int = 0) -> dict[str, Any]:
    """Pack examples without padding: ``input_ids``, ``position_ids``, ``labels``, ``weights``,
    ``example_index`` (the position in ``features`` of each token's example), ``examples`` and flash
    attention's ``cu_seq_lens_q/k``, ``max_length_q/k``.

    Rows hold at most ``max_tokens`` tokens; by default as many as the batch's longest example, so a
    row costs sdpa and eager (which attend over the whole row under a mask) no more than a padded row,
    and a batch needs fewer rows than examples. A budget of at least the batch's total length gives
    one row and no padding at all: the layout for flash attention, whose varlen kernel only attends
    within each example. Shorter rows are filled with ``pad_id`` tokens that form a sequence of their
    own (positions from 0, label -100, weight 0, example -1), which no real token attends to. Labels and
    weights are copied token by token, except the first of each example, which is masked.
    """
    features = _checked(features)
    lengths = [len(f.input_ids) for f in features]
    rows = pack_rows(lengths, max_tokens or max(lengths))
    width = max(sum(len(features[i].input_ids) for i in row) for row in rows)
    shape = (len(rows), width)
    batch = _rows(shape, pad_id) | {"position_ids": torch.zeros(shape, dtype=torch.long)}
    starts = []  # where each sequence (example or padding) begins in the flattened rows
    for r, row in enumerate(rows):
        start = 0
        for index in row:
            feature = features[index]
            starts.append(r * width + start)
            end = start + len(feature.input_ids)
            batch["input_ids"][r, start:end] = torch.tensor(feature.input_ids, dtype=torch.long)
            batch["position_ids"][r, start:end] = torch.arange(end - start)
            batch["labels"][r, start + 1:end] = torch.tensor(feature.labels[1:], dtype=torch.long)
            batch["weights"][r, start + 1:end] = torch.tensor(feature.weights[1:], dtype=torch.float32)
            batch["example_index"][r, start:end] = index
            start = end
        batch["position_ids"][r, start:] = torch.arange(width - start)
        if start < width:
            starts.append(r * width + start)
    bounds = torch.tensor([*starts, len(rows) * width], dtype=torch.int32)
    longest = int(bounds.diff().max())
    return batch | {"examples": _examples(features), "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds,
                    "max_length_q": longest, "max_length_k": longest}
