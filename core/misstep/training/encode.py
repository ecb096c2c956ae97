"""Examples to token ids with labels and weights, from one rendering of the whole conversation.

The conversation is rendered once with the tokenizer's chat template (the example's tool schemas as
``tools=``; text observations in ``tool`` turns as ``user``, as the ReAct agent sends them; tool results
that answer a call as ``tool`` turns) and tokenised once with character offsets. Each message's content
is located in the rendered text, so a token belongs to a message by its characters: tokenising message
by message would change the tokens at the boundaries. A trained message's labels cover its content and
the template's closing text up to and including the first special token after it (``<|im_end|>``,
``</s>``): the model learns to end its turn. An assistant turn with tool calls also covers the calls as
the template writes them; when it has no text, it starts where the template's generation prompt for it
ends (so the template must render the conversation before it, with the generation prompt, as the
beginning of the whole). No generation markers are needed in the template.

Labels are unshifted (``labels[t] == input_ids[t]`` where trained, ``-100`` elsewhere); losses shift.
The first token of an example is never labelled, so examples can be packed into one row.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from misstep.datamodel import Example, Message, PreferenceExample, RankedExample, ToolCall, ToolSchema
from misstep.errors import DataError, MisstepError
from misstep.training.continuations import ContinuationFeatures
from misstep.training.token_loss import IGNORE_INDEX, ExampleInfo


@dataclass
class Encoded:
    """One tokenised example: ids, labels (``-100`` where not trained), per-token loss weights.

    ``weights`` is 0.0 exactly where ``labels`` is ``-100``. ``truncated`` says the conversation was
    longer than ``max_length``: it was cut there and the labels of the turn that was cut were dropped.
    ``example`` is what a loss learns about the example (id, label, reward, metadata).
    """

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    truncated: bool
    example: ExampleInfo = field(default_factory=ExampleInfo)

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass(frozen=True)
class _Range:
    """Characters ``[start, end)`` of the rendered text trained with ``weight``."""

    start: int
    end: int
    weight: float


def chat_call(call: ToolCall, *, arguments_as_text: bool = False) -> dict[str, Any]:
    """A tool call as chat templates (arguments as an object) or the OpenAI API (as a JSON string) take it."""
    arguments: Any = json.dumps(call.arguments, ensure_ascii=False) if arguments_as_text else call.arguments
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def chat_messages(messages: Sequence[Message], *, arguments_as_text: bool = False) -> list[dict[str, Any]]:
    """Messages as chat-template (or OpenAI API) input. A ``tool`` turn that answers a call keeps its role,
    call id and name; one without a call id is a text observation and becomes a ``user`` turn."""
    rows: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool" and message.tool_call_id is None:
            rows.append({"role": "user", "content": message.content})
            continue
        row: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            row["tool_calls"] = [chat_call(call, arguments_as_text=arguments_as_text) for call in message.tool_calls]
        if message.tool_call_id is not None:
            row["tool_call_id"] = message.tool_call_id
        if message.name is not None:
            row["name"] = message.name
        rows.append(row)
    return rows


def render(tokenizer: Any, messages: Sequence[Message], *, tools: Sequence[ToolSchema] = (),
           generation_prompt: bool = False) -> str:
    """The chat template's text for ``messages`` and ``tools`` (a template error becomes a MisstepError)."""
    if not getattr(tokenizer, "chat_template", None):
        raise MisstepError("the tokenizer has no chat template; misstep renders conversations with it (set "
                           "`model.tokenizer:` to a tokenizer folder whose tokenizer_config.json has chat_template)")
    try:
        return tokenizer.apply_chat_template(chat_messages(messages), tools=list(tools) or None, tokenize=False,
                                             add_generation_prompt=generation_prompt)
    except Exception as error:  # jinja raises its own errors (e.g. roles must alternate)
        raise MisstepError(f"the chat template cannot render this conversation: {error}") from None


def _call_starts(tokenizer: Any, messages: Sequence[Message], tools: Sequence[ToolSchema], text: str,
                 first: int = 0) -> dict[int, int]:
    """Where each calling assistant turn without text starts in ``text``: the end of the template's
    rendering of the messages before it with the generation prompt (keys count from ``messages[first]``)."""
    starts = {}
    for index in range(first, len(messages)):
        if messages[index].tool_calls and not messages[index].content:
            before = render(tokenizer, messages[:index], tools=tools, generation_prompt=True)
            if not text.startswith(before):
                raise MisstepError(f"message {index} (a tool call): the chat template does not render the messages "
                                   "before it, with the generation prompt, as the beginning of the conversation, so "
                                   "the call's tokens cannot be found")
            starts[index - first] = len(before)
    return starts


def _end_markers(tokenizer: Any) -> list[str]:
    """Special tokens that can close a turn: all special and added special tokens but bos and pad."""
    skip = {tokenizer.bos_token, tokenizer.pad_token}
    special = set(tokenizer.all_special_tokens)
    special |= {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    return sorted(token for token in special if token and token not in skip)


def _closing(text: str, end: int, gap_end: int, markers: Sequence[str]) -> int:
    """The end of the first special token in ``text[end:gap_end]`` (``end`` when there is none)."""
    gap = text[end:gap_end]
    hits = [(gap.find(marker), marker) for marker in markers if marker in gap]
    return end + min(hits)[0] + len(min(hits)[1]) if hits else end


def _spans(text: str, messages: Sequence[Message], markers: Sequence[str], start: int = 0,
           call_starts: dict[int, int] | None = None) -> list[list[_Range]]:
    """For each message, the trained character ranges of ``text`` (empty for masked messages).

    ``call_starts`` gives where each calling assistant turn without text starts (:func:`_call_starts`).
    """
    located: list[tuple[int, int, int]] = []  # content start and end in ``text``, where the original starts
    calls: dict[int, int] = {}  # calling turn -> the end of its closing special token
    cursor = start
    for index, message in enumerate(messages):
        if message.tool_calls and not message.content:
            found = content_start = (call_starts or {})[index]
            content = ""
        else:
            found = text.find(message.content, cursor)
            content = message.content
            if found < 0:  # templates may trim content
                content = message.content.strip()
                found = text.find(content, cursor)
            content_start = found - message.content.find(content)
        if found < 0:
            raise MisstepError(f"message {index} ({message.role}) is not in the text its chat template renders; "
                               "the template rewrites message content, so tokens cannot be mapped to messages")
        located.append((found, found + len(content), content_start))
        cursor = found + len(content)
        if message.tool_calls:
            calls[index] = cursor = _closing(text, cursor, len(text), markers)
            missing = [call.name for call in message.tool_calls if call.name not in text[found:cursor]]
            if missing:
                raise MisstepError(f"message {index} calls {missing[0]!r}, but its chat template does not write the "
                                   "call into the text; use a tokenizer whose chat template supports tool calls")
    ranges: list[list[_Range]] = []
    for index, message in enumerate(messages):
        begin, end, origin = located[index]
        if not message.trained:
            ranges.append([])
            continue
        gap_end = located[index + 1][0] if index + 1 < len(messages) else len(text)
        closing = calls[index] if index in calls else _closing(text, end, gap_end, markers)
        ranges.append(_message_ranges(message, begin, end, closing, origin))
    return ranges


def _message_ranges(message: Message, begin: int, end: int, closing: int, origin: int) -> list[_Range]:
    """The message's trained ranges: content ``[begin, end)`` at the message weight with its spans'
    overrides (span offsets count from ``origin``), then the closing text at the message weight."""

    def clamp(position: int) -> int:
        return min(max(position, begin), end)

    cuts = {begin, end}
    for span in message.spans:
        cuts.add(clamp(origin + span.start))
        cuts.add(clamp(origin + span.end) if span.end is not None else end)
    bounds = sorted(cuts)
    ranges = []
    for left, right in zip(bounds, bounds[1:]):
        weight = message.weight
        for span in message.spans:  # the last span that covers a range wins
            span_end = origin + span.end if span.end is not None else end
            if origin + span.start <= left and right <= span_end:
                weight = span.weight
        ranges.append(_Range(left, right, weight))
    if closing > end:
        ranges.append(_Range(end, closing, message.weight))
    return ranges


def _tokenise(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise MisstepError("training needs a fast tokenizer (character offsets); this one is a slow tokenizer. "
                           "Convert it with transformers' PreTrainedTokenizerFast or save it with tokenizer.json")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [tuple(pair) for pair in encoding["offset_mapping"]]


def _label(ids: list[int], offsets: list[tuple[int, int]], ranges: list[list[_Range]]
           ) -> tuple[list[int], list[float], list[int]]:
    """Labels, weights and the message each token belongs to (-1: none trained) from character ranges.

    A token is trained when one of its characters lies in a trained range; its weight is that of the
    range holding its first trained character. Tokens of weight 0 are not trained.
    """
    flat = sorted(((r, message) for message, rs in enumerate(ranges) for r in rs if r.end > r.start),
                  key=lambda pair: pair[0].start)
    starts = [r.start for r, _ in flat]
    labels, weights, owners = [IGNORE_INDEX] * len(ids), [0.0] * len(ids), [-1] * len(ids)
    for t, (left, right) in enumerate(offsets):
        right = max(right, left + 1)  # zero-width offsets still name a character
        i = max(bisect.bisect_right(starts, left) - 1, 0)
        while i < len(flat) and flat[i][0].start < right:
            r, message = flat[i]
            if r.end > left:
                if r.weight != 0:
                    labels[t], weights[t], owners[t] = ids[t], r.weight, message
                break
            i += 1
    if labels:
        labels[0], weights[0], owners[0] = IGNORE_INDEX, 0.0, -1
    return labels, weights, owners


def encode_example(example: Example, tokenizer: Any, max_length: int) -> Encoded:
    """Token ids, labels and weights of ``example`` (see the module docstring).

    Longer conversations are cut at ``max_length`` tokens; the labels of the turn the cut falls in
    are dropped (earlier turns keep theirs) and ``truncated`` is set.
    """
    try:
        text = render(tokenizer, example.messages, tools=example.tools)
        starts = _call_starts(tokenizer, example.messages, example.tools, text)
        ranges = _spans(text, example.messages, _end_markers(tokenizer), call_starts=starts)
    except MisstepError as error:
        raise DataError(f"example {example.id!r}: {error}") from None
    ids, offsets = _tokenise(tokenizer, text)
    labels, weights, owners = _label(ids, offsets, ranges)
    truncated = len(ids) > max_length
    if truncated:
        cut = owners[max_length]  # the message that continues past the cut loses its labels
        ids, labels, weights, owners = ids[:max_length], labels[:max_length], weights[:max_length], owners[:max_length]
        if cut >= 0:
            for t, owner in enumerate(owners):
                if owner == cut:
                    labels[t], weights[t] = IGNORE_INDEX, 0.0
    return Encoded(input_ids=ids, labels=labels, weights=weights, truncated=truncated, example=ExampleInfo.of(example))


def encode_continuations(prompt: Sequence[Message], continuations: Sequence[Sequence[Message]], tokenizer: Any, *,
                         tools: Sequence[ToolSchema] = ()) -> tuple[list[int], list[list[int]], list[list[bool]]]:
    """The prompt (with the generation prompt) and each continuation of it as token ids, with each
    continuation token's trained flag.

    A continuation's text is what the template adds after the prompt for the continuation's messages; its
    trained tokens are those of trained messages (each turn's closing special token included), so the tool,
    user and system turns of a multi-turn continuation are context only. Raises MisstepError when the
    template does not render the prompt as the beginning of the prompt with a continuation.
    """
    prompt_text = render(tokenizer, prompt, tools=tools, generation_prompt=True)
    markers = _end_markers(tokenizer)
    prompt_ids, _ = _tokenise(tokenizer, prompt_text)
    continuation_ids: list[list[int]] = []
    continuation_trained: list[list[bool]] = []
    for number, messages in enumerate(continuations):
        conversation = [*prompt, *messages]
        full = render(tokenizer, conversation, tools=tools)
        if not full.startswith(prompt_text):
            raise MisstepError(f"continuation {number}: the chat template does not render the prompt with the "
                               "generation prompt as the beginning of the prompt with the continuation")
        starts = _call_starts(tokenizer, conversation, tools, full, first=len(prompt))
        ranges = _spans(full, messages, markers, start=len(prompt_text), call_starts=starts)
        last = max((r.end for rs in ranges for r in rs), default=len(prompt_text))
        text = full[len(prompt_text):last]
        shifted = [[_Range(r.start - len(prompt_text), r.end - len(prompt_text), r.weight) for r in rs]
                   for rs in ranges]
        ids, offsets = _tokenise(tokenizer, text)
        labels, _, _ = _label([0, *ids], [(0, 0), *offsets], shifted)  # a dummy first token: never trained
        continuation_ids.append(ids)
        continuation_trained.append([label != IGNORE_INDEX for label in labels[1:]])
    return prompt_ids, continuation_ids, continuation_trained


def _features(prompt: Sequence[Message], continuations: Sequence[Sequence[Message]], rewards: list[float],
              tokenizer: Any, max_length: int, tools: Sequence[ToolSchema], what: str) -> ContinuationFeatures | None:
    """Continuation features, or None when the prompt and the longest continuation exceed ``max_length``."""
    if not prompt:
        raise DataError(f"{what}: the prompt is empty; the continuations need a prompt to continue")
    try:
        prompt_ids, ids, trained = encode_continuations(prompt, continuations, tokenizer, tools=tools)
    except MisstepError as error:
        raise DataError(f"{what}: {error}") from None
    if len(prompt_ids) + max(map(len, ids)) > max_length:
        return None
    return ContinuationFeatures(prompt_ids=prompt_ids, candidate_ids=ids, candidate_trained=trained, rewards=rewards)


def encode_ranked(example: RankedExample, tokenizer: Any, max_length: int) -> ContinuationFeatures | None:
    """The prompt and each candidate as a continuation of it (:func:`encode_continuations`). Returns None when
    the prompt and some candidate do not fit in ``max_length`` (the caller counts it truncated)."""
    return _features(example.prompt, [c.messages for c in example.candidates], [c.reward for c in example.candidates],
                     tokenizer, max_length, (), f"ranked example {example.id!r}")


def encode_preference(example: PreferenceExample, tokenizer: Any, max_length: int) -> ContinuationFeatures | None:
    """The prompt and its two continuations, the chosen side first, with the pair's rewards (metadata
    ``chosen_reward``/``rejected_reward``; 1 and 0 without them). None when it does not fit in ``max_length``."""
    rewards = [float(example.metadata.get("chosen_reward", 1.0)), float(example.metadata.get("rejected_reward", 0.0))]
    return _features(example.prompt, [example.chosen, example.rejected], rewards, tokenizer, max_length,
                     example.tools, f"preference example {example.id!r}")


DESIRABLE_LABELS = {"desirable": True, "positive": True, "undesirable": False, "negative": False}
"""Example labels of unpaired preference losses (KTO) and whether each is desirable."""


def encode_unpaired(example: Example, tokenizer: Any, max_length: int) -> ContinuationFeatures | None:
    """An example labelled desirable or undesirable (:data:`DESIRABLE_LABELS`) as a prompt (the messages before
    its first trained one) and one continuation (the rest), with ``desirable`` and its reward (0 without one).
    None when it does not fit in ``max_length``."""
    what = f"example {example.id!r}"
    if example.label not in DESIRABLE_LABELS:
        raise DataError(f"{what} has the label {example.label!r}; an unpaired preference loss needs "
                        f"{' or '.join(map(repr, DESIRABLE_LABELS))} (the trajectory-labels reformatter writes them)")
    first = next((index for index, message in enumerate(example.messages) if message.trained), None)
    if first is None:
        raise DataError(f"{what} has no trained message: nothing to prefer or avoid")
    features = _features(example.messages[:first], [example.messages[first:]], [example.reward or 0.0], tokenizer,
                         max_length, example.tools, what)
    if features is not None:
        features["desirable"] = DESIRABLE_LABELS[example.label]
    return features


def add_mismatched(rows: Sequence[ContinuationFeatures], max_length: int) -> None:
    """Give each unpaired example a second continuation: the previous example's (the first gets the last one's),
    cut to fit ``max_length`` after its prompt. These mismatched pairs estimate KTO's KL term, as TRL builds them
    (its completions rotated by one)."""
    partners = [(row["candidate_ids"][0], row["candidate_trained"][0], row["rewards"][0]) for row in rows]
    for row, (ids, trained, reward) in zip(rows, partners[-1:] + partners[:-1]):
        room = max_length - len(row["prompt_ids"])
        row["candidate_ids"].append(ids[:room])
        row["candidate_trained"].append(trained[:room])
        row["rewards"].append(reward)
