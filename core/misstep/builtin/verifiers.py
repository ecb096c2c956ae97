"""Built-in verifiers: ``numeric`` (math answers), ``qa`` (exact match and token F1) and ``yes-no``.

- ``numeric`` reads the answer as a number ("$1,000", "18.0", "2/3", "50%", "-3.5e2"; with ``last_number``
  the last number in a longer answer) and compares it with the gold number within a relative
  tolerance. ``strict: true`` is the reference code's rule instead: the answer text equals the gold.
- ``qa`` normalises both sides as SQuAD does (lower case, no punctuation, no articles a/an/the, single
  spaces) and reports ``em`` and token ``f1`` (HotpotQA's rule: yes/no/noanswer must match exactly);
  a list of gold aliases counts the best. Correct means an exact match.
- ``yes-no`` maps a normalised answer that is yes/true or no/false to a bool and compares it with the gold
  (NAT's rule; ``first_word: true`` also accepts "Yes, because ...").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from pydantic import Field

from misstep.components import Options, Verifier
from misstep.datamodel import Message, Task, Verdict
from misstep.hookspecs import Register, hookimpl

_EXPONENT = r"(?:[eE][-+]?\d{1,3})?"  # at most 3 digits: "1e999999999" must not build a huge integer
_NUMBER = rf"[-+]?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d*)?{_EXPONENT}|[-+]?\.\d+{_EXPONENT}"
_WHOLE = re.compile(rf"(?:{_NUMBER})(?:\s*/\s*(?:{_NUMBER}))?")
_ANYWHERE = re.compile(rf"(?<![\w.])(?:{_NUMBER})(?:\s*/\s*\d+)?(?!\.?\d|[eE][-+]?\d)")
_DECORATION = str.maketrans({"$": None, "€": None, "£": None, "%": None, "\u2212": "-", "\u00a0": " "})


def _fraction(text: str) -> Fraction | None:
    """A number written as text, exactly ("1,000" -> 1000, "2/3", "1.5e3"); None if it is not one."""
    numerator, _, denominator = text.replace(",", "").replace(" ", "").partition("/")
    try:
        value = Fraction(numerator)
        return value / Fraction(denominator) if denominator else value
    except (ValueError, ZeroDivisionError):
        return None


def parse_number(text: str, *, last: bool = True) -> Fraction | None:
    """The number ``text`` states: all of it once currency, percent signs and a final period are dropped;
    else, with ``last``, the last number in it ("#### 72", "The answer is 18 apples.")."""
    cleaned = text.translate(_DECORATION).strip().rstrip(".").strip()
    if _WHOLE.fullmatch(cleaned):
        return _fraction(cleaned)
    if last:
        for match in reversed(_ANYWHERE.findall(cleaned)):
            if (value := _fraction(match)) is not None:
                return value
    return None


def gold_text(answer: object) -> str:
    """A gold answer as text (a list of aliases: the first)."""
    if isinstance(answer, (list, tuple)):
        return str(answer[0]) if answer else ""
    return "" if answer is None else str(answer)


def _missing(prediction: str | None) -> Verdict:
    return Verdict(correct=False, prediction=prediction,
                   feedback="no answer: the episode ended without finish[...]")


class NumericVerifier(Verifier["NumericVerifier.Options"]):
    """Math answers: the number in the answer equals the gold number (normalised, within a tolerance)."""

    name = "numeric"

    class Options(Options):
        tolerance: float = Field(default=1e-5, ge=0, description="relative difference allowed (absolute below 1); "
                                 "the default accepts a calculator's 6-digit rounding")
        last_number: bool = Field(default=True, description="judge the last number of an answer that is not "
                                  "just a number ('The answer is 18 apples.')")
        strict: bool = Field(default=False, description="the reference code's rule: the answer text equals the "
                             "gold text exactly ('18.0' and '$18' are wrong when the gold is '18')")

    def verify(self, task: Task, prediction: str | None, messages: Sequence[Message] = ()) -> Verdict:
        if prediction is None:
            return _missing(prediction)
        gold = gold_text(task.answer)
        if self.options.strict:
            correct = prediction.strip() == gold.strip()
            return Verdict(correct=correct, score=float(correct), prediction=prediction,
                           feedback=None if correct else f"expected exactly {gold!r}")
        expected = None if isinstance(task.answer, bool) else parse_number(gold)
        if expected is None:
            return Verdict(correct=None, prediction=prediction, feedback=f"the gold answer {gold!r} is not a number")
        value = parse_number(prediction, last=self.options.last_number)
        if value is None:
            return Verdict(correct=False, prediction=prediction, feedback=f"no number in the answer {prediction!r}")
        correct = abs(value - expected) <= self.options.tolerance * max(Fraction(1), abs(expected))
        return Verdict(correct=correct, score=float(correct), prediction=prediction,
                       feedback=None if correct else f"expected {_show(expected)}, got {_show(value)}")


def _show(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_YES_NO = {"yes", "no", "noanswer"}


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles removed, whitespace collapsed."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 of the normalised answers; yes/no/noanswer score only when equal (HotpotQA's rule)."""
    predicted, expected = normalize_answer(prediction), normalize_answer(gold)
    if (predicted in _YES_NO or expected in _YES_NO) and predicted != expected:
        return 0.0
    predicted_tokens, expected_tokens = predicted.split(), expected.split()
    common = sum((Counter(predicted_tokens) & Counter(expected_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted_tokens), common / len(expected_tokens)
    return 2 * precision * recall / (precision + recall)


def aliases(answer: object) -> list[str]:
    """The accepted gold strings: a list of aliases, one answer, or yes/no for a bool."""
    if isinstance(answer, bool):
        return ["yes" if answer else "no"]
    if isinstance(answer, (list, tuple)):
        return [str(a) for a in answer]
    return [] if answer is None else [str(answer)]


class QAVerifier(Verifier[Options]):
    """Open QA: exact match and token F1 after SQuAD normalisation (best over gold aliases)."""

    name = "qa"

    def verify(self, task: Task, prediction: str | None, messages: Sequence[Message] = ()) -> Verdict:
        golds = aliases(task.answer)
        if not golds:
            return Verdict(correct=None, prediction=prediction, feedback="the task has no gold answer")
        if prediction is None:
            return _missing(prediction).model_copy(update={"metrics": {"em": 0.0, "f1": 0.0}})
        em = max(exact_match(prediction, gold) for gold in golds)
        f1 = max(f1_score(prediction, gold) for gold in golds)
        return Verdict(correct=em == 1.0, score=f1, prediction=prediction, metrics={"em": em, "f1": f1},
                       feedback=None if em == 1.0 else f"expected {golds[0]!r}")


_WORDS = {"yes": True, "true": True, "no": False, "false": False}


def yes_no(text: object, *, first_word: bool = False) -> bool | None:
    """A bool, or a normalised text that is yes/true or no/false (with ``first_word``, its first word); else None."""
    if isinstance(text, bool):
        return text
    words = normalize_answer(str(text)).split()
    if not words or (len(words) > 1 and not first_word):
        return None
    return _WORDS.get(words[0])


class YesNoVerifier(Verifier["YesNoVerifier.Options"]):
    """Yes/no questions (StrategyQA): the answer, normalised, is yes or no and equals the gold."""

    name = "yes-no"

    class Options(Options):
        first_word: bool = Field(default=False, description="accept answers that start with yes/no ('Yes, because "
                                 "...'); NAT's rule (default) wants the whole answer to be yes or no")

    def verify(self, task: Task, prediction: str | None, messages: Sequence[Message] = ()) -> Verdict:
        gold = yes_no(task.answer)
        if gold is None:
            return Verdict(correct=None, prediction=prediction, feedback=f"the gold answer {task.answer!r} is not yes/no")
        if prediction is None:
            return _missing(prediction)
        answer = yes_no(prediction, first_word=self.options.first_word)
        if answer is None:
            return Verdict(correct=False, prediction=prediction, feedback=f"not a yes/no answer: {prediction!r}")
        correct = answer == gold
        return Verdict(correct=correct, score=float(correct), prediction=prediction,
                       feedback=None if correct else f"expected {'Yes' if gold else 'No'}")


@hookimpl
def register_verifiers(register: Register) -> None:
    register(NumericVerifier)
    register(QAVerifier)
    register(YesNoVerifier)
