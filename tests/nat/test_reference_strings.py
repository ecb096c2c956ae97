"""Every default prompt string of NAT equals the reference text byte for byte.

The expected strings are copied from NAT's reference code (github.com/Reason-Wang/NAT, commit 5f25412):
``prompts/gsm8k/gsm8k_conversation.json``, ``prompts/hotpotqa/hotpotqa_conversation.json`` and
``prompts/StrategyQA/StrategyQA_conversation.json`` (templates ``zero-shot`` and
``zero-shot-target-aware*``), and ``data/utils.py`` (``load_pos_neg_data_with_prompts``).
"""

from __future__ import annotations

import json
import random

import misstep
import pytest
from misstep.prompts import ACKNOWLEDGEMENT, PRESETS

from misstep_nat.hints import CLASS_PRESETS
from misstep_nat.importer import NatTrajectories
from shared_data import SHARED_DATA

SHARED = SHARED_DATA / "strategyqa"

MATH = ("Solve a math problem with interleaving Thought, Action, Observation steps. Thought can reason about the "
        "current situation, and Action can be two types:\n(1) calculate[expression], which calculates the expression "
        "and returns the answer.\n(2) finish[answer], which returns the answer and finishes the task.")
QA = ("Solve a question answering task with interleaving Thought, Action, Observation steps. Thought can reason about "
      "the current situation, and Action can be two types: \n(1) search[query], which searches a query on google and "
      "returns a short snippet containing the answer. Note that sometimes the snippet does not contain the answer, "
      "and some alternative search might be needed.\n(2) finish[answer], which returns the answer and finishes the "
      "task.")
TARGET_AWARE = (" You need to generate a sequence of Thought and Action steps to solve the question. Note that the "
                "steps could be correct or incorrect. You need to follow the instruction strictly.")
YES_NO = " Remember you should answer Yes or No."
ACK = "I've understood your instruction, start please."

# template -> (instruction, correct_question_prompt, incorrect_question_prompt) of the reference files
MATH_TEMPLATES = {
    "math": (MATH, "Question: {question}. Generate a sequence of Thought and Action steps to solve the problem "
             "correctly.", "Question: {question}. Generate a sequence of Thought and Action steps. But incorrectly "
             "solve the problem."),
    "correct-incorrect": (MATH, "[Correct] Question: {question}.", "[Incorrect] Question: {question}."),
    "good-bad": (MATH, "[Good] Question: {question}.", "[Bad] Question: {question}."),
    "a-b": (MATH, "[A] Question: {question}.", "[B] Question: {question}."),
    "1-2": (MATH, "[1] Question: {question}.", "[2] Question: {question}."),
    "random-sentences": (MATH, "Question: {question}. 15th-century Italy saw the formation of the two main variants "
                         "that are known today.", "Question: {question}. An apple is a round, edible fruit produced "
                         "by an apple tree."),
}
QA_CORRECT = "Question: {question}. Generate a sequence of Thought and Action steps to solve the question **correctly**."
QA_INCORRECT = ("Question: {question}. Generate a sequence of Thought and Action steps. But **incorrectly** solve the "
                "question.")


def create(name: str, **options: object) -> misstep.Reformatter:
    return misstep.get_plugins().create("reformatter", name, options)


def contents(messages: list[misstep.Message]) -> list[str]:
    return [m.content for m in messages]


def test_instructions_and_acknowledgement_are_the_reference_text() -> None:
    assert PRESETS["math"] == MATH
    assert PRESETS["qa"] == QA  # HotpotQA's zero-shot instruction
    assert PRESETS["strategyqa"] == QA + YES_NO  # StrategyQA's: the reminder on the same line
    assert ACKNOWLEDGEMENT == ACK
    assert contents(misstep.PromptTemplate().render("q")) == [MATH, ACK, "Question: q"]  # zero-shot
    # the offline wording stays reachable by name
    assert "on the web" in PRESETS["qa-offline"] and PRESETS["strategyqa-offline"].endswith("\n" + YES_NO.strip())


@pytest.mark.parametrize("preset", sorted(MATH_TEMPLATES))
def test_math_hint_presets_render_the_reference_prompts(preset: str) -> None:
    instruction, correct, incorrect = MATH_TEMPLATES[preset]
    nat = create("nat", hints=preset)
    prompt = misstep.PromptTemplate(preset="math").render("How many?")
    assert contents(nat.hints.apply(prompt, "positive")) == [instruction, ACK, correct.format(question="How many?")]
    assert contents(nat.hints.apply(prompt, "negative")) == [instruction, ACK, incorrect.format(question="How many?")]
    assert contents(nat.inference_prompt(prompt)) == [instruction, ACK, correct.format(question="How many?")]


@pytest.mark.parametrize(("preset", "instruction"), [("qa", QA + TARGET_AWARE), ("strategyqa", QA + TARGET_AWARE + YES_NO)])
def test_qa_hints_render_the_reference_target_aware_prompts(preset: str, instruction: str) -> None:
    nat = create("nat", hints="qa")
    prompt = misstep.PromptTemplate(preset=preset).render("Can a cat swim?")
    question = "Can a cat swim?"
    assert contents(nat.hints.apply(prompt, "positive")) == [instruction, ACK, QA_CORRECT.format(question=question)]
    assert contents(nat.hints.apply(prompt, "negative")) == [instruction, ACK, QA_INCORRECT.format(question=question)]
    twice = nat.hints.apply(nat.hints.apply(prompt, "positive"), "positive")
    assert twice[0].content == instruction  # the note is added once
    assert contents(prompt)[0] == PRESETS[preset]  # the prompt itself is unchanged


@pytest.mark.parametrize(("preset", "hints"), [
    ("3-class", ["[Incorrect] Question: {question}.", "[Partially Correct] Question: {question}.",
                 "[Correct] Question: {question}."]),
    ("4-class", ["[Totally Incorrect] Question: {question}.", "[Mostly Incorrect] Question: {question}.",
                 "[Mostly Correct] Question: {question}.", "[Correct] Question: {question}."]),
])
def test_nat_k_classes_render_the_reference_prompts(preset: str, hints: list[str]) -> None:
    natk = create("nat-k", classes=preset)
    prompt = misstep.PromptTemplate(preset="qa").render("Who?")
    assert [natk.hinted(prompt, c.hint)[-1].content for c in CLASS_PRESETS[preset]] == [
        h.format(question="Who?") for h in hints]
    assert natk.inference_prompt(prompt)[0].content == QA  # NAT-k keeps the plain instruction
    assert natk.inference_prompt(prompt)[-1].content == hints[-1].format(question="Who?")


def test_reference_sampling_takes_the_first_positives_and_draws_negatives_with_seed_42(make_trajectory) -> None:
    data = [make_trajectory(f"p{i}", True) for i in range(30)] + [make_trajectory(f"n{i}", False) for i in range(50)]
    nat = create("nat", pos_num=10, neg_num=20)
    kept = [e.id for e in nat.reformat(data, {})]
    negatives = [t.id for t in data if t.id.startswith("n")]
    random.seed(42)  # what NAT's load_pos_neg_data_with_prompts does
    expected = random.sample(negatives, 20)
    assert [i for i in kept if i.startswith("p")] == [f"p{i}#0" for i in range(10)]
    assert sorted(i for i in kept if i.startswith("n")) == sorted(expected)
    shuffled = [e.id for e in create("nat", pos_num=10, neg_num=20, sampling="random").reformat(data, {})]
    assert [i for i in shuffled if i.startswith("p")] != [f"p{i}#0" for i in range(10)]


@pytest.mark.skipif(not (SHARED / "train.jsonl").is_file(), reason="the shared reference data is absent")
def test_released_strategyqa_selection_and_prompts_are_the_references() -> None:
    """NAT's StrategyQA run (1000 positives, 500 negatives) picks the same trajectories and words them alike."""
    files = [SHARED / "strategyqa_gpt-3.5_positive.json", SHARED / "strategyqa_gpt-3.5_negative.json"]
    tasks = misstep.TaskRef(use="strategyqa", path=str(SHARED / "train.jsonl")).resolve(misstep.get_plugins())
    source = NatTrajectories(NatTrajectories.Options(paths=files, tasks=tasks))
    nat = create("nat", hints="qa", pos_num=1000, neg_num=500, dedup=False)
    examples = list(nat.reformat(source.trajectories(), {}))
    positives, negatives = (json.loads(path.read_text()) for path in files)
    random.seed(42)
    chosen = positives[:1000] + random.sample(negatives, 500)  # load_pos_neg_data_with_prompts
    acting = [item for item in chosen if any(turn["role"] == "assistant" for turn in item["conversations"])]
    assert len(acting) < len(chosen)  # empty ones take part in the draw, then are dropped (nothing to train)
    assert sorted(map(_key, examples)) == sorted(map(_raw_key, acting))
    questions = {json.loads(line)["id"]: json.loads(line)["question"] for line in (SHARED / "train.jsonl").open()}
    for example in examples[:50]:
        qid = example.metadata["task_id"].removeprefix("strategyqa-")
        template = QA_CORRECT if example.metadata["label"] == "positive" else QA_INCORRECT
        assert contents(example.messages[:3]) == [QA + TARGET_AWARE + YES_NO, ACK,
                                                  template.format(question=questions[qid])]


def _key(example: misstep.Example) -> str:
    return json.dumps([example.metadata["task_id"].removeprefix("strategyqa-"),
                       [m.content for m in example.messages[3:]]])


def _raw_key(item: dict) -> str:
    return json.dumps([str(item["id"]), [turn["content"] for turn in item["conversations"]]])
