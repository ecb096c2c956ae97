"""How k candidate responses to one prompt are laid out in a batch for scoring.

Two layouts of the same tokens, chosen by ``shared``:

- shared prompt (default): one row per query, ``[prompt | candidate 1 | ... | candidate k]``; a 4-D
  attention mask lets each candidate see the prompt and its own earlier tokens only, and each
  candidate's position ids continue from the prompt's end. The prompt is encoded once per query.
- naive concatenation: one row per candidate, ``[prompt | candidate]`` (the prompt is encoded k times),
  as the RRHF and TRICE reference code does.

Both give every query's candidates the same computation, so scores and gradients agree. Prompts are
left-padded so that all candidate tokens sit at or after one column (``prompt_width``): the model only
has to produce logits from the last prompt token on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch

PAD, PROMPT = -2, -1  # group ids of padding and prompt tokens; candidate j has group j
PAD_ID = 0  # any id will do: padding is masked out both ways and its logits are never read


class Features(TypedDict):
    """One ranked example as token ids: the prompt, each candidate's tokens with a trained flag, rewards."""

    prompt_ids: list[int]
    candidate_ids: list[list[int]]
    candidate_trained: list[list[bool]]
    rewards: list[float]


def collate(features: Sequence[Features], *, shared: bool = True) -> dict[str, torch.Tensor]:
    """Batch tensors for :func:`misstep_trice.rrhf.candidate_scores` in the chosen layout.

    ``prompt_width`` is the padded prompt length (candidates start there). ``token_*`` tensors list
    every trained candidate token: its row, the column whose logits predict it (counted from
    ``prompt_width - 1``), its id and its candidate (``query * K + j``). ``rewards`` and ``valid`` are
    (queries, K) with K the largest pool; ``valid`` marks the candidates that exist and have trained tokens.
    """
    width = max(len(f["prompt_ids"]) for f in features)
    most = max(len(f["rewards"]) for f in features)
    rows: list[tuple[list[int], list[int], list[int]]] = []  # ids, positions, groups
    tokens: list[tuple[int, int, int, int]] = []  # row, predicting column, token id, candidate
    for query, feature in enumerate(features):
        prompt = feature["prompt_ids"]
        pad = width - len(prompt)
        head_ids = [PAD_ID] * pad + list(prompt)
        head_pos = [0] * pad + list(range(len(prompt)))
        head_groups = [PAD] * pad + [PROMPT] * len(prompt)
        parts = enumerate(zip(feature["candidate_ids"], feature["candidate_trained"]))
        groups_of_rows = [list(parts)] if shared else [[part] for part in parts]
        for group in groups_of_rows:
            ids, pos, groups = list(head_ids), list(head_pos), list(head_groups)
            for j, (cand_ids, trained) in group:
                start = len(ids)
                for t, (token, train) in enumerate(zip(cand_ids, trained)):
                    if train:
                        predictor = width - 1 if t == 0 else start + t - 1
                        tokens.append((len(rows), predictor - (width - 1), token, query * most + j))
                ids.extend(cand_ids)
                pos.extend(range(len(prompt), len(prompt) + len(cand_ids)))
                groups.extend([j] * len(cand_ids))
            rows.append((ids, pos, groups))
    length = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), length), PAD_ID, dtype=torch.long)
    position_ids = torch.zeros((len(rows), length), dtype=torch.long)
    group_ids = torch.full((len(rows), length), PAD, dtype=torch.long)
    for r, (ids, pos, groups) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        position_ids[r, : len(pos)] = torch.tensor(pos)
        group_ids[r, : len(groups)] = torch.tensor(groups)
    rewards = torch.zeros((len(features), most))
    for query, feature in enumerate(features):
        rewards[query, : len(feature["rewards"])] = torch.tensor(feature["rewards"], dtype=torch.float)
    table = torch.tensor(tokens, dtype=torch.long).reshape(-1, 4)
    # a candidate takes part only when it has trained tokens (padding slots and empty candidates do not)
    valid = torch.bincount(table[:, 3], minlength=len(features) * most).view(len(features), most) > 0
    return {
        "input_ids": input_ids,
        "prompt_width": torch.tensor(width),
        "position_ids": position_ids,
        "attention_mask": attention_mask(group_ids),
        "token_row": table[:, 0],
        "token_column": table[:, 1],
        "token_id": table[:, 2],
        "token_candidate": table[:, 3],
        "rewards": rewards,
        "valid": valid,
    }


def attention_mask(group: torch.Tensor) -> torch.Tensor:
    """Boolean (rows, 1, L, L) mask: causal, prompt visible to all, candidates blind to each other.

    Padding positions attend to themselves only, so no row of the softmax is empty.
    """
    length = group.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    query, key = group[:, :, None], group[:, None, :]
    visible = (key == PROMPT) | (key == query)
    mask = causal & visible & (key != PAD) & (query != PAD)
    mask |= torch.eye(length, dtype=torch.bool)
    return mask[:, None]


def additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as the additive float mask every attention implementation accepts."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)

