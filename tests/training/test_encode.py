"""Encoding examples: labels exactly on trained turns and their end-of-turn token, for two chat templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from misstep.datamodel import Candidate, Example, Message, RankedExample, WeightSpan
from misstep.errors import DataError
from misstep.training.encode import encode_example, encode_ranked, render
from misstep.training.token_loss import IGNORE_INDEX as IGNORE

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


def trained_weights(tokenizer, encoded) -> list[tuple[str, float]]:
    return [(tokenizer.decode([t]), w) for t, label, w in zip(encoded.input_ids, encoded.labels, encoded.weights)
            if label != IGNORE]


def test_message_weights_train_flags_and_spans(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    messages = [
        Message(role="user", content="Question: 3 + 4?"),
        Message(role="assistant", content="Action: Calculator[3 + 4]", train=False),
        Message(role="tool", content="Observation: 7", train=True, weight=0.5),
        Message(role="assistant", content="Feedback: good. Action: Finish[7]", weight=2.0,
                spans=[WeightSpan(start=0, end=15, weight=0.0), WeightSpan(start=23, weight=3.0)]),
    ]
    encoded = encode_example(Example(id="w", messages=messages), tokenizer, 1024)
    pairs = trained_weights(tokenizer, encoded)
    text = "".join(token for token, _ in pairs)
    assert text == "Observation: 7<|im_end|>" + " Action: Finish[7]<|im_end|>"
    assert {w for token, w in pairs[: len(pairs) // 2] if "Observation" in token or token == "7"} == {0.5}
    by_token = dict(pairs[-8:])
    assert by_token[" Action"] == 2.0 and by_token[" Finish"] == 3.0 and by_token["7"] == 3.0
    assert pairs[-1] == ("<|im_end|>", 2.0)  # the closing text takes the message weight, not the span's


def test_truncation_drops_the_labels_of_the_cut_turn_only(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    example = Example(id="t", messages=TRAJECTORY)
    full = encode_example(example, tokenizer, 1024)
    second_turn = [i for i, label in enumerate(full.labels) if label != IGNORE][-1]  # its end token
    cut = encode_example(example, tokenizer, second_turn)  # cuts the last turn before its end token
    assert cut.truncated and len(cut.input_ids) == second_turn
    trained, _ = runs(tokenizer, cut)
    assert trained == TRAINED["chatml"][:1]  # the first turn keeps its labels, the cut one has none
    observation = full.input_ids.index(tokenizer.convert_tokens_to_ids("<|im_start|>"), 60)
    inside_prompt = encode_example(example, tokenizer, 10)
    assert inside_prompt.truncated and inside_prompt.trained_tokens == 0 and observation > 10


def test_templates_that_trim_content_still_map(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = tokenizer.chat_template.replace("message['content']", "(message['content'] | trim)")
    messages = [Message(role="user", content="  Question: 3 + 4?\n"), Message(role="assistant", content=" Finish[7]\n")]
    trained, _ = runs(tokenizer, encode_example(Example(id="x", messages=messages), tokenizer, 64))
    assert trained == ["Finish[7]<|im_end|>"]


def test_a_template_that_drops_content_is_a_data_error(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = tokenizer.chat_template.replace("message['content']", "message['content'] | upper")
    with pytest.raises(DataError, match="example 'x'.*template rewrites message content"):
        encode_example(Example(id="x", messages=[Message(role="user", content="hello")]), tokenizer, 64)


def test_ranked_candidates_are_continuations_of_the_generation_prompt(template) -> None:
    name, tokenizer = template
    prompt = TRAJECTORY[:2]
    example = RankedExample(id="r", prompt=prompt, candidates=[
        Candidate(messages=[Message(role="assistant", content="Action: Finish[36]")], reward=1.0),
        Candidate(messages=[Message(role="assistant", content="Action: Finish[35]")], reward=0.0),
    ])
    features = encode_ranked(example, tokenizer, 1024)
    assert features is not None and features["rewards"] == [1.0, 0.0]
    assert features["prompt_ids"] == tokenizer(render(tokenizer, prompt, generation_prompt=True),
                                               add_special_tokens=False)["input_ids"]
    end = "<|im_end|>" if name == "chatml" else " </s>"
    space = "" if name == "chatml" else " "
    for ids, trained, answer in zip(features["candidate_ids"], features["candidate_trained"], ["36", "35"]):
        assert all(trained)
        assert tokenizer.decode(ids) == f"{space}Action: Finish[{answer}]{end}"
    assert encode_ranked(example, tokenizer, len(features["prompt_ids"]) + 3) is None
