"""NAT's hints: the texts that tell the model which kind of trajectory it is looking at.

A hint set maps a label (``positive``, ``negative``) to a text and says where the text goes on the
question turn. The presets are the strings of NAT's reference prompt files byte for byte
(``prompts/gsm8k/gsm8k_conversation.json`` and ``prompts/hotpotqa/hotpotqa_conversation.json``,
templates ``zero-shot-target-aware*``): the paper's hints, and the non-interpretable variants of its
Table 7. NAT-k classes map a verdict metric (F1 by default) to hints.
"""

from __future__ import annotations

import re
from typing import Literal

import misstep
from pydantic import BaseModel, ConfigDict, Field, model_validator

Position = Literal["prefix", "suffix"]

MATH_POSITIVE = "Generate a sequence of Thought and Action steps to solve the problem correctly."
MATH_NEGATIVE = "Generate a sequence of Thought and Action steps. But incorrectly solve the problem."
QA_POSITIVE = "Generate a sequence of Thought and Action steps to solve the question **correctly**."
QA_NEGATIVE = "Generate a sequence of Thought and Action steps. But **incorrectly** solve the question."
# NAT's QA prompts (HotpotQA, StrategyQA) also add this to the instruction, for both kinds.
QA_TARGET_AWARE = ("You need to generate a sequence of Thought and Action steps to solve the question. Note that "
                   "the steps could be correct or incorrect. You need to follow the instruction strictly.")


class HintSet(BaseModel):
    """Hint text per label and where it goes on the question turn.

    ``suffix``: ``<question><separator><hint>`` (separator ". ": "Question: {question}. Generate ...");
    ``prefix``: ``<hint><separator><question><closing>`` (separator " ", closing ".": "[Good] Question:
    {question}."). ``instruction_note``, when set, is added to the instruction turn for both labels,
    after the sentence describing ``finish[answer]`` (where NAT's QA prompts have it).
    """

    model_config = ConfigDict(extra="forbid")

    positive: str = Field(min_length=1)
    negative: str = Field(min_length=1)
    position: Position = "suffix"
    separator: str | None = Field(default=None, description='default: ". " for a suffix, " " for a prefix')
    closing: str | None = Field(default=None, description='after the question with a prefix hint (default ".")')
    instruction_note: str | None = Field(default=None, description="a sentence added to the instruction turn")

    @model_validator(mode="after")
    def _distinct(self) -> HintSet:
        if self.positive == self.negative:
            raise ValueError("the positive and negative hints must differ: NAT learns from telling them apart")
        return self

    def text(self, label: str) -> str:
        """The hint for ``positive`` or ``negative``."""
        return self.positive if label == "positive" else self.negative

    def placed(self, position: Position | None = None) -> HintSet:
        """This hint set at ``position`` (unchanged when None)."""
        return self if position is None or position == self.position else self.model_copy(update={"position": position})

    def apply(self, prompt: list[misstep.Message], label: str) -> list[misstep.Message]:
        """A copy of ``prompt`` with the hint for ``label`` on its question turn (and the instruction note)."""
        prefix = self.position == "prefix"
        separator = self.separator if self.separator is not None else (" " if prefix else ". ")
        closing = self.closing if self.closing is not None else ("." if prefix else "")
        hinted = hint_prompt(prompt, self.text(label), self.position, separator, closing)
        return note_prompt(hinted, self.instruction_note) if self.instruction_note else hinted


# Table 7 of the paper: the gain comes from distinguishing the two kinds, not from the wording.
HINT_PRESETS: dict[str, HintSet] = {
    "math": HintSet(positive=MATH_POSITIVE, negative=MATH_NEGATIVE),
    "qa": HintSet(positive=QA_POSITIVE, negative=QA_NEGATIVE, instruction_note=QA_TARGET_AWARE),
    "correct-incorrect": HintSet(positive="[Correct]", negative="[Incorrect]", position="prefix"),
    "good-bad": HintSet(positive="[Good]", negative="[Bad]", position="prefix"),
    "a-b": HintSet(positive="[A]", negative="[B]", position="prefix"),
    "1-2": HintSet(positive="[1]", negative="[2]", position="prefix"),
    "random-sentences": HintSet(
        positive="15th-century Italy saw the formation of the two main variants that are known today.",
        negative="An apple is a round, edible fruit produced by an apple tree.",
    ),
}


def resolve_hints(hints: str) -> HintSet:
    """A hint preset by name."""
    if hints not in HINT_PRESETS:
        raise ValueError(f"unknown hint preset {hints!r}; choose one of: {', '.join(HINT_PRESETS)}, "
                         "or give {positive: ..., negative: ...}")
    return HINT_PRESETS[hints]


def add_hint(content: str, hint: str, position: Position, separator: str, closing: str = "") -> str:
    """The question turn's content with ``hint`` placed before or after it."""
    return f"{hint}{separator}{content}{closing}" if position == "prefix" else f"{content}{separator}{hint}"


def hint_prompt(prompt: list[misstep.Message], hint: str, position: Position, separator: str,
                closing: str = "") -> list[misstep.Message]:
    """A copy of ``prompt`` with the hint on its question turn (the last user message)."""
    for index in range(len(prompt) - 1, -1, -1):
        if prompt[index].role == "user":
            question = prompt[index]
            content = add_hint(question.content, hint, position, separator, closing)
            return [*prompt[:index], question.model_copy(update={"content": content}), *prompt[index + 1:]]
    raise misstep.ComponentError("the prompt has no user turn to put the NAT hint on; check the prompt template")


_FINISH_SENTENCE = re.compile(r"finish\[[^\n]*?\.(?=\s|$)")


def add_note(instruction: str, note: str) -> str:
    """``instruction`` with ``note`` after the sentence describing ``finish[...]`` (or at its end); unchanged
    when it already holds the note."""
    if note in instruction:
        return instruction
    found = _FINISH_SENTENCE.search(instruction)
    at = found.end() if found else len(instruction.rstrip())
    return f"{instruction[:at]} {note}{instruction[at:]}"


def note_prompt(prompt: list[misstep.Message], note: str) -> list[misstep.Message]:
    """A copy of ``prompt`` with ``note`` in its instruction turn (the first user message)."""
    for index, message in enumerate(prompt):
        if message.role == "user":
            noted = message.model_copy(update={"content": add_note(message.content, note)})
            return [*prompt[:index], noted, *prompt[index + 1:]]
    return prompt


class HintClass(BaseModel):
    """One NAT-k class: its hint and the lowest metric value that belongs to it."""

    model_config = ConfigDict(extra="forbid")

    hint: str = Field(min_length=1)
    min: float | None = Field(default=None, description="lowest value in the class; None for the lowest class")
    inclusive: bool = Field(default=True, description="whether `min` itself belongs to the class")

    def admits(self, value: float) -> bool:
        if self.min is None:
            return True
        return value >= self.min if self.inclusive else value > self.min


def _classes(*specs: tuple[str, float | None, bool]) -> list[HintClass]:
    return [HintClass(hint=hint, min=low, inclusive=inclusive) for hint, low, inclusive in specs]


# NAT-k on HotpotQA, by token F1 of the prediction (methods.md): lowest class first, top class last.
CLASS_PRESETS: dict[str, list[HintClass]] = {
    "3-class": _classes(("[Incorrect]", None, True), ("[Partially Correct]", 0.0, False), ("[Correct]", 1.0, True)),
    "4-class": _classes(
        ("[Totally Incorrect]", None, True),
        ("[Mostly Incorrect]", 0.0, False),
        ("[Mostly Correct]", 0.4, True),
        ("[Correct]", 1.0, True),
    ),
}


def resolve_classes(name: str) -> list[HintClass]:
    """A NAT-k class preset by name."""
    if name not in CLASS_PRESETS:
        raise ValueError(f"unknown class preset {name!r}; choose one of: {', '.join(CLASS_PRESETS)}, "
                         "or give a list of {hint, min, inclusive}, lowest class first")
    return CLASS_PRESETS[name]


def check_classes(classes: list[HintClass]) -> list[HintClass]:
    """Validate a class list: at least two, the first open below, lower bounds ascending, hints distinct."""
    if len(classes) < 2:
        raise ValueError("NAT-k needs at least two classes")
    if classes[0].min is not None:
        raise ValueError("the first (lowest) class must have no `min`, so that every value has a class")
    bounds = [(c.min, not c.inclusive) for c in classes[1:]]
    if any(b is None for b, _ in bounds) or bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
        raise ValueError("classes after the first need a `min`, in ascending order, each distinct")
    hints = [c.hint for c in classes]
    if len(set(hints)) != len(hints):
        raise ValueError("every class needs its own hint")
    return classes


def classify(value: float, classes: list[HintClass]) -> int:
    """Index of the highest class that admits ``value``."""
    return max(index for index, cls in enumerate(classes) if cls.admits(value))
