"""TRICE's answer rules: math compares the tool result or the last number, rounded to 2 decimals;
QA counts a hit when any gold alias appears in the prediction. Registered as the verifiers
``trice-math`` and ``trice-qa``; math verdicts carry the distance to the gold number, which ranking uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

import misstep

_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+"
)


def last_number(text: str) -> float | None:
    """The last number in ``text`` ("1,000", "-2.5", "1.2e+10", a fraction "2/3"), or None."""
    for match in reversed(_NUMBER.findall(text)):
        value = match.replace(",", "").replace(" ", "")
        try:
            if "/" in value:
                numerator, denominator = value.split("/")
                return float(Fraction(numerator) / Fraction(denominator))
            return float(value)
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
    return None


def gold_number(answer: misstep.Task | object) -> float | None:
    """A task's gold answer as a number ("#### 51", "1,000", 51, 51.0); None when it holds none."""
    value = answer.answer if isinstance(answer, misstep.Task) else answer
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return last_number(str(value))


def aliases(answer: object) -> list[str]:
    """The gold answer's accepted strings (a list of aliases, or one answer)."""
    if answer is None:
        return []
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer if str(a).strip()]
    return [str(answer)]


def states_answer(task: misstep.Task, argument: str) -> bool:
    """Whether a call's argument already holds the gold answer, which the teacher saw: a bare number equal
    to the gold number (``calculator(72)``), or, for gold aliases (QA), an alias as a word of the argument."""
    text = argument.strip().strip("\"'`").strip()
    gold = gold_number(task)
    if _NUMBER.fullmatch(text):
        value = last_number(text)
        return gold is not None and value is not None and round(value, 2) == round(gold, 2)
    if gold is None or isinstance(task.answer, list):
        lowered = text.lower()
        return any(re.search(rf"(?<!\w){re.escape(alias.lower())}(?!\w)", lowered) for alias in aliases(task.answer))
    return False


def is_error(observation: str | None) -> bool:
    return observation is not None and observation.lstrip().lower().startswith("error")


class TriceMath(misstep.Verifier["TriceMath.Options"]):
    """Math as TRICE scores it: last number (or the tool result) equals the gold rounded to 2 decimals."""

    name = "trice-math"

    class Options(misstep.Options):
        decimals: int = 2

    def verify(self, task: misstep.Task, prediction: str | None,
               messages: Sequence[misstep.Message] = ()) -> misstep.Verdict:
        gold = gold_number(task)
        value = None if prediction is None or is_error(prediction) else last_number(prediction)
        if gold is None or value is None:
            return misstep.Verdict(correct=False, prediction=prediction,
                                   feedback="no number in the answer" if gold is not None else "no gold number")
        correct = round(value, self.options.decimals) == round(gold, self.options.decimals)
        return misstep.Verdict(correct=correct, score=float(correct), prediction=str(value),
                               metrics={"distance": abs(value - gold)})


class TriceQA(misstep.Verifier[misstep.Options]):
    """Open QA as TRICE scores it: a hit when any gold alias appears in the prediction (case-insensitive)."""

    name = "trice-qa"

    def verify(self, task: misstep.Task, prediction: str | None,
               messages: Sequence[misstep.Message] = ()) -> misstep.Verdict:
        if prediction is None or is_error(prediction):
            return misstep.Verdict(correct=False, prediction=prediction, feedback="no answer")
        text = prediction.lower()
        correct = any(alias.lower() in text for alias in aliases(task.answer))
        return misstep.Verdict(correct=correct, score=float(correct), prediction=prediction)
