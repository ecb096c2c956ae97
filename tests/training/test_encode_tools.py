"""Exact masks for tool-calling conversations: assistant turns (text and calls, with their end token) are
trained, system, user and tool turns never are, checked token by token with a Hermes/Qwen-style template."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from misstep.datamodel import Example, Message, ToolCall
from misstep.errors import DataError
from misstep.training.encode import encode_example, render
from misstep.training.token_loss import IGNORE_INDEX as IGNORE

SCHEMA = {"type": "function", "function": {"name": "calculate", "description": "Evaluate an arithmetic expression.",
                                           "parameters": {"type": "object",
                                                          "properties": {"expression": {"type": "string"}},
                                                          "required": ["expression"]}}}
CALL = '<tool_call>\n{"name": "calculate", "arguments": {"expression": "%s"}}\n</tool_call>'


def conversation() -> list[Message]:
    return [
        Message(role="system", content="Solve the problem with the calculator."),
        Message(role="user", content="What is 3 * 12 - 5?"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="calculate", arguments={"expression": "3 * 12"})]),
        Message(role="tool", content="36", tool_call_id="c1", name="calculate"),
        Message(role="assistant", content="Now subtract.", tool_calls=[
            ToolCall(id="c2", name="calculate", arguments={"expression": "36 - 5"}),
            ToolCall(id="c3", name="calculate", arguments={"expression": "5 - 36"})]),
        Message(role="tool", content="31", tool_call_id="c2", name="calculate"),
        Message(role="tool", content="-31", tool_call_id="c3", name="calculate"),
        Message(role="assistant", content="31"),
    ]


@pytest.fixture(scope="module")
def tokenizer(tiny_hermes: Path):
    return AutoTokenizer.from_pretrained(tiny_hermes)


def expected_labels(tokenizer, text: str, trained: list[str]) -> list[int]:
    """Labels built independently of the encoder: a token is trained when it lies inside one of the
    ``trained`` substrings (found in order in ``text``)."""
    ranges, cursor = [], 0
    for piece in trained:
        start = text.index(piece, cursor)
        ranges.append((start, start + len(piece)))
        cursor = start + len(piece)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [token if any(s <= left and right <= e for s, e in ranges) else IGNORE
            for token, (left, right) in zip(encoding["input_ids"], encoding["offset_mapping"])]


def test_calls_and_final_answer_are_trained_token_by_token(tokenizer) -> None:
    messages = conversation()
    encoded = encode_example(Example(id="e", messages=messages, tools=[SCHEMA]), tokenizer, 2048)
    text = render(tokenizer, messages, tools=[SCHEMA])
    assert '"name": "calculate", "description"' in text  # the schema reached the template
    trained = [CALL % "3 * 12" + "<|im_end|>",
               "Now subtract.\n" + CALL % "36 - 5" + "\n" + CALL % "5 - 36" + "<|im_end|>",
               "31<|im_end|>"]
    assert encoded.labels == expected_labels(tokenizer, text, trained)
    runs = "".join(tokenizer.decode([t]) if label != IGNORE else "\0" for t, label in zip(encoded.input_ids,
                                                                                           encoded.labels))
    assert [run for run in runs.split("\0") if run] == trained
    assert encoded.weights == [0.0 if label == IGNORE else 1.0 for label in encoded.labels]


def test_system_user_and_tool_turns_are_never_trained(tokenizer) -> None:
    messages = conversation()
    messages[3] = messages[3].model_copy(update={"train": True})
    encoded = encode_example(Example(id="e", messages=conversation(), tools=[SCHEMA]), tokenizer, 2048)
    masked_text = "".join(tokenizer.decode([t]) for t, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE)
    for message in conversation():
        if message.role in ("system", "user", "tool"):
            assert message.content in masked_text
    assert "<tool_response>\n36\n</tool_response>" in masked_text and "# Tools" in masked_text
    # a tool result that the example asks to train is trained (masks follow the messages' attributes)
    trained = encode_example(Example(id="e", messages=messages, tools=[SCHEMA]), tokenizer, 2048)
    assert trained.trained_tokens > encoded.trained_tokens


def test_a_template_without_tool_support_is_refused(tiny_model: Path) -> None:
    chatml = AutoTokenizer.from_pretrained(tiny_model)
    with pytest.raises(DataError, match="message 2 calls 'calculate', but its chat template does not write the call"):
        encode_example(Example(id="e", messages=conversation(), tools=[SCHEMA]), chatml, 2048)


def test_text_react_conversations_encode_as_before_with_the_tools_template(tokenizer) -> None:
    messages = [Message(role="user", content="Question: 2+2"), Message(role="assistant", content="Action: finish[4]"),
                Message(role="tool", content="Observation: done")]
    encoded = encode_example(Example(id="e", messages=messages), tokenizer, 256)
    text = render(tokenizer, messages)
    assert "<|im_start|>user\nObservation: done" in text  # a text observation is a user turn
    assert encoded.labels == expected_labels(tokenizer, text, ["Action: finish[4]<|im_end|>"])
