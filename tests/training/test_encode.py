"""Encoding examples: labels exactly on trained turns and their end-of-turn token, for two chat templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from misstep.datamodel import Candidate, Example, Message, RankedExample, WeightSpan
from misstep.errors import DataError
from misstep.training.encode import IGNORE, encode_example, encode_ranked, render

TRAJECTORY = [
    Message(role="system", content="Solve a question answering task."),
    Message(role="user", content="Question: Tom has 3 bags with 12 apples. How many apples?"),
    Message(role="assistant", content="Thought: multiply.\nAction: Calculator[3 * 12]"),
    Message(role="tool", content="Observation: 36"),
    Message(role="assistant", content="Thought: done.\nAction: Finish[36]"),
]

# what each template must train: every assistant turn with its closing text up to the end token
TRAINED = {
    "chatml": ["Thought: multiply.\nAction: Calculator[3 * 12]<|im_end|>", "Thought: done.\nAction: Finish[36]<|im_end|>"],
    "llama2": [" Thought: multiply.\nAction: Calculator[3 * 12] </s>", " Thought: done.\nAction: Finish[36] </s>"],
}


@pytest.fixture(params=["chatml", "llama2"])
def template(request: pytest.FixtureRequest, tiny_model: Path, tiny_llama2: Path) -> tuple[str, object]:
    folder = tiny_model if request.param == "chatml" else tiny_llama2
    return request.param, AutoTokenizer.from_pretrained(folder)


def runs(tokenizer, encoded) -> tuple[list[str], list[str]]:
    """The texts of the maximal runs of trained tokens and of untrained tokens, token by token."""
    trained: list[str] = []
    masked: list[str] = []
    previous = None
    for token, label in zip(encoded.input_ids, encoded.labels):
        assert label in (IGNORE, token)
        is_trained = label != IGNORE
        text = tokenizer.decode([token])
        target = trained if is_trained else masked
        if is_trained == previous:
            target[-1] += text
        else:
            target.append(text)
        previous = is_trained
    return trained, masked


def test_only_assistant_turns_and_their_end_token_are_trained(template) -> None:
    name, tokenizer = template
    encoded = encode_example(Example(id="e", messages=TRAJECTORY), tokenizer, 1024)
    text = render(tokenizer, TRAJECTORY)
    assert encoded.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]  # one tokenisation
    trained, masked = runs(tokenizer, encoded)
    assert trained == TRAINED[name]
    # the prompt, the observation turn and (ChatML) the newline the template adds after the last end token
    assert masked[2:] == (["\n"] if name == "chatml" else [])
    assert "Question:" in masked[0] and "Observation: 36" in masked[1] and "Observation" not in "".join(trained)
    assert all((w == 0.0) == (label == IGNORE) for w, label in zip(encoded.weights, encoded.labels))
    assert {w for w in encoded.weights if w} == {1.0}
    assert encoded.labels[0] == IGNORE and not encoded.truncated
    assert encoded.trained_tokens == sum(label != IGNORE for label in encoded.labels) > 0
