"""A prompt and k continuations of it in one batch, and each continuation's log-probability: the layout of
every ranked and preference loss (RRHF's candidates, DPO's chosen and rejected sides, KTO's completion and
its mismatched KL completion).

Two layouts of the same tokens, chosen by ``shared``:

- shared prompt (default): one row per prompt, ``[prompt | continuation 1 | ... | continuation k]``; a 4-D
  attention mask lets each continuation see the prompt and its own earlier tokens only, and each
  continuation's position ids continue from the prompt's end. The prompt is encoded once.
- naive: one row per continuation, ``[prompt | continuation]`` (the prompt is encoded k times), as the
  RRHF, TRICE and TRL reference code do.

Both give every continuation the same computation, so scores and gradients agree. Prompts are left-padded
so that all continuation tokens sit at or after one column (``prompt_width``): only the columns from the
last prompt token on predict a continuation token.

Features (one per prompt, :class:`ContinuationFeatures`) come from :mod:`misstep.training.encode`; a
continuation's trained tokens are those of its trained messages (assistant turns by default), so tool,
user and system tokens inside a multi-turn continuation are context and contribute nothing.
:func:`continuation_scores` runs the model on a batch and returns the log-probability of every trained
token as :class:`~misstep.TokenScores` whose "examples" are the continuations (``query * K + j``):
``per_example()`` is then each continuation's summed log-probability.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from misstep.errors import ComponentError
from misstep.training.output_layer import DEFAULT_CHUNK_SIZE, head_scores, output_layer, run_hidden, scores
from misstep.training.token_loss import TokenScores

if TYPE_CHECKING:
    from torch import Tensor, dtype

PAD, PROMPT = -2, -1  # group ids of padding and prompt tokens; continuation j has group j
PAD_ID = 0  # any id will do: padding is masked out both ways and its logits are never read


class _Continuations(TypedDict):
    prompt_ids: list[int]
    candidate_ids: list[list[int]]
    candidate_trained: list[list[bool]]
    rewards: list[float]


class ContinuationFeatures(_Continuations, total=False):
    """A prompt and its continuations as token ids: each continuation's tokens with a trained flag, a reward per
    continuation (ranked losses), and where the loss needs them the reference model's summed log-probability
    of each continuation (``reference``) and whether the example is desirable (``desirable``, unpaired losses)."""

    reference: list[float]
    desirable: bool


def collate_continuations(features: Sequence[ContinuationFeatures], *, shared: bool = True) -> dict[str, Any]:
    """Batch tensors for :func:`continuation_scores` in the chosen layout.

    ``prompt_width`` is the padded prompt length (continuations start there). ``token_*`` tensors list every
    trained continuation token: its row, the column whose logits predict it (counted from ``prompt_width - 1``),
    its id and its continuation (``query * K + j``). ``rewards`` and ``valid`` are (queries, K) with K the
    largest number of continuations; ``valid`` marks the continuations that exist and have trained tokens.
    ``reference`` (queries, K) and ``desirable`` (queries) come along when the features hold them.
    """
    import torch

    width = max(len(f["prompt_ids"]) for f in features)
    most = max(len(f["candidate_ids"]) for f in features)
    rows: list[tuple[list[int], list[int], list[int]]] = []  # ids, positions, groups
    tokens: list[tuple[int, int, int, int]] = []  # row, predicting column, token id, continuation
    for query, feature in enumerate(features):
        prompt = feature["prompt_ids"]
        if not prompt:
            raise ComponentError(f"continuation batch: example {query} has an empty prompt; every continuation "
                                 "needs a prompt token to predict its first token")
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
    table = torch.tensor(tokens, dtype=torch.long).reshape(-1, 4)
    # a continuation takes part only when it has trained tokens (padding slots and empty ones do not)
    valid = torch.bincount(table[:, 3], minlength=len(features) * most).view(len(features), most) > 0
    batch: dict[str, Any] = {
        "input_ids": input_ids,
        "prompt_width": torch.tensor(width),
        "position_ids": position_ids,
        "attention_mask": attention_mask(group_ids),
        "token_row": table[:, 0],
        "token_column": table[:, 1],
        "token_id": table[:, 2],
        "token_candidate": table[:, 3],
        "rewards": _table(features, "rewards", most),
        "valid": valid,
    }
    if all("reference" in f for f in features):
        batch["reference"] = _table(features, "reference", most)
    if all("desirable" in f for f in features):
        batch["desirable"] = torch.tensor([f["desirable"] for f in features], dtype=torch.bool)
    return batch


def _table(features: Sequence[ContinuationFeatures], key: str, most: int) -> Tensor:
    """(queries, most) float32 values of a per-continuation list, 0 where a query has fewer continuations."""
    import torch

    values = torch.zeros((len(features), most))
    for query, feature in enumerate(features):
        row: list[float] = feature[key]  # type: ignore[literal-required]
        values[query, : len(row)] = torch.tensor(row, dtype=torch.float)
    return values


def attention_mask(group: Tensor) -> Tensor:
    """Boolean (rows, 1, L, L) mask: causal, prompt visible to all, continuations blind to each other.

    Padding positions attend to themselves only, so no row of the softmax is empty.
    """
    import torch

    length = group.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=group.device).tril()
    query, key = group[:, :, None], group[:, None, :]
    visible = (key == PROMPT) | (key == query)
    mask = causal & visible & (key != PAD) & (query != PAD)
    mask |= torch.eye(length, dtype=torch.bool, device=group.device)
    return mask[:, None]


def additive(mask: Tensor, dtype: dtype) -> Tensor:
    """A boolean mask as an additive float mask: 0 where attended, the dtype's minimum elsewhere."""
    import torch

    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def unwrapped(model: Any) -> Any:
    """The model inside DDP / DeepSpeed wrappers (for its config and embeddings)."""
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    return model


def model_mask(model: Any, mask: Tensor) -> Tensor:
    """The boolean 4-D mask as the additive float mask every attention implementation takes, in the dtype the
    attention computes in (the autocast dtype under autocast, else the model's), made once for all layers.

    Flash attention cannot take a per-continuation mask: load the model with ``sdpa`` or ``eager``.
    """
    import torch

    inner = unwrapped(model)
    implementation = str(getattr(inner.config, "_attn_implementation", None) or "eager")
    if "flash" in implementation:
        raise ComponentError(f"ranked and preference losses need a 4-D attention mask, which {implementation!r} "
                             "attention does not take; load the model with sdpa or eager attention")
    device = mask.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else \
        inner.get_input_embeddings().weight.dtype
    return additive(mask, dtype)


def continuation_lengths(batch: Mapping[str, Any]) -> Tensor:
    """(queries, K) number of trained tokens of each continuation (0 where there is none)."""
    import torch

    size = batch["rewards"].numel()
    return torch.bincount(batch["token_candidate"], minlength=size).view_as(batch["rewards"])


def continuation_scores(model: Any, batch: Mapping[str, Any], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> TokenScores:
    """Run ``model`` on a continuation batch and score every trained continuation token.

    The result's ``example`` is the token's continuation (``query * K + j``) and ``examples`` is
    ``queries * K``: ``per_example().view_as(batch["rewards"])`` is each continuation's summed log-probability.
    Only the trained tokens go through the output layer, ``chunk_size`` at a time, as in
    :func:`~misstep.token_logprobs` (``chunk_size=0``: the model computes the logits of every column from the
    last prompt token on, all at once).
    """
    import torch

    inputs = {"input_ids": batch["input_ids"], "attention_mask": model_mask(model, batch["attention_mask"]),
              "position_ids": batch["position_ids"], "use_cache": False}
    head = output_layer(model) if chunk_size > 0 else None
    if head is None:
        keep = batch["input_ids"].shape[1] - int(batch["prompt_width"]) + 1
        return score_continuation_logits(model(**inputs, logits_to_keep=keep).logits, batch)
    hidden, autocast = run_hidden(model, inputs, head)
    columns = batch["token_column"] + int(batch["prompt_width"]) - 1
    wanted = batch["token_id"]
    logprobs, _, correct = head_scores(head, hidden[batch["token_row"], columns], wanted,
                                       torch.zeros_like(wanted, dtype=torch.bool), chunk_size, autocast)
    return TokenScores(logprobs=logprobs, correct=correct, weights=torch.ones_like(logprobs),
                       example=batch["token_candidate"], examples=batch["rewards"].numel())


def score_continuation_logits(logits: Tensor, batch: Mapping[str, Any]) -> TokenScores:
    """:class:`~misstep.TokenScores` of a batch's trained continuation tokens from the logits of the columns from
    the last prompt token on (``logits[:, 0]`` predicts each continuation's first token)."""
    import torch

    wanted = batch["token_id"]
    logprobs, _, correct = scores(logits[batch["token_row"], batch["token_column"]], wanted,
                                  torch.zeros_like(wanted, dtype=torch.bool))
    return TokenScores(logprobs=logprobs, correct=correct, weights=torch.ones_like(logprobs),
                       example=batch["token_candidate"], examples=batch["rewards"].numel())
