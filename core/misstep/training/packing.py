"""Batches of encoded examples: right-padded rows, or padding-free packed rows.

Both collators take encoded examples (anything with ``input_ids``, ``labels`` (-100 = masked) and
``weights`` (0 where masked), e.g. :class:`misstep.training.encode.Encoded`) and return tensors with
unshifted labels, as transformers' causal LMs expect.

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
``use_cache=False`` (``model_inputs(batch)`` does), or the examples of a row silently attend to each
other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

IGNORE_INDEX = -100


class Features(Protocol):
    """An encoded example: token ids with per-token labels and loss weights, all the same length."""

    input_ids: Sequence[int]
    labels: Sequence[int]
    weights: Sequence[float]


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


def collate_padded(features: Sequence[Features], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad examples to the longest: ``input_ids``, ``attention_mask``, ``labels``, ``weights``.

    Padding carries ``pad_id``, attention 0, label -100 and weight 0.
    """
    features = _checked(features)
    width = max(len(f.input_ids) for f in features)
    shape = (len(features), width)
    batch = {
        "input_ids": torch.full(shape, pad_id, dtype=torch.long),
        "attention_mask": torch.zeros(shape, dtype=torch.long),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=torch.long),
        "weights": torch.zeros(shape, dtype=torch.float32),
    }
    for row, feature in enumerate(features):
        length = len(feature.input_ids)
        batch["input_ids"][row, :length] = torch.tensor(feature.input_ids, dtype=torch.long)
        batch["attention_mask"][row, :length] = 1
        batch["labels"][row, :length] = torch.tensor(feature.labels, dtype=torch.long)
        batch["weights"][row, :length] = torch.tensor(feature.weights, dtype=torch.float32)
    return batch


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
                   pad_id: int = 0) -> dict[str, torch.Tensor | int]:
    """Pack examples without padding: ``input_ids``, ``position_ids``, ``labels``, ``weights`` and
    flash attention's ``cu_seq_lens_q/k``, ``max_length_q/k``.

    Rows hold at most ``max_tokens`` tokens; by default as many as the batch's longest example, so a
    row costs sdpa and eager (which attend over the whole row under a mask) no more than a padded row,
    and a batch needs fewer rows than examples. A budget of at least the batch's total length gives
    one row and no padding at all: the layout for flash attention, whose varlen kernel only attends
    within each example. Shorter rows are filled with ``pad_id`` tokens that form a sequence of their
    own (positions from 0, label -100, weight 0), which no real token attends to. Labels and weights
    are copied token by token, except the first of each example, which is masked.
    """
    features = _checked(features)
    lengths = [len(f.input_ids) for f in features]
    rows = pack_rows(lengths, max_tokens or max(lengths))
    width = max(sum(len(features[i].input_ids) for i in row) for row in rows)
    shape = (len(rows), width)
    batch = {
        "input_ids": torch.full(shape, pad_id, dtype=torch.long),
        "position_ids": torch.zeros(shape, dtype=torch.long),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=torch.long),
        "weights": torch.zeros(shape, dtype=torch.float32),
    }
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
            start = end
        batch["position_ids"][r, start:] = torch.arange(width - start)
        if start < width:
            starts.append(r * width + start)
    bounds = torch.tensor([*starts, len(rows) * width], dtype=torch.int32)
    longest = int(bounds.diff().max())
    return batch | {"cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": longest, "max_length_k": longest}


MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                "max_length_k")


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a causal LM's forward pass for a padded or packed batch.

    ``use_cache=False`` is what lets transformers see packed rows (with a cache it skips the check).
    """
    return {key: batch[key] for key in MODEL_INPUTS if key in batch} | {"use_cache": False}
