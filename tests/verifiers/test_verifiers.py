"""The built-in verifiers: numeric, qa (EM/F1) and yes-no."""

from __future__ import annotations

import json

import pytest

import misstep
from misstep.builtin.verifiers import (
    NumericVerifier,
    QAVerifier,
    YesNoVerifier,
    f1_score,
    normalize_answer,
    parse_number,
)
from shared_data import SHARED_DATA


def task(answer: object) -> misstep.Task:
    return misstep.Task(id="t", question="q", answer=answer)


@pytest.mark.parametrize(("text", "value"), [
    ("18", 18), ("18.0", 18), ("$18", 18), ("$1,000", 1000), ("1,000.50", 1000.5), ("2/3", 2 / 3),
    ("50%", 50), ("-3.5e2", -350), ("18.", 18), (".5", 0.5), ("\u22125", -5),
    ("The answer is 18 apples.", 18), ("#### 72", 72), ("from 2 to 1/3", 1 / 3),
    ("abc", None), ("1/0", None), ("1e999999999", None), ("9" * 5000, None),
])
def test_parse_number(text: str, value: float | None) -> None:
    parsed = parse_number(text)
    assert (parsed is None) if value is None else abs(float(parsed) - value) < 1e-12


@pytest.mark.parametrize(("gold", "prediction", "correct"), [
    ("18", "18", True), ("18", "18.0", True), ("18", "$18", True), (18, "18.00", True), ("1000", "$1,000", True),
    ("2/3", "0.666667", True),  # the calculator's 6 significant digits
    ("2/3", "0.67", False), ("18", "17", False), ("18", "eighteen", False), ("0.5", "1/2", True),
    ("#### 72", "72", True), ("18", "I think 18", True), (2.5, "5/2", True),
])
def test_numeric(gold: object, prediction: str, correct: bool) -> None:
    verdict = NumericVerifier().verify(task(gold), prediction)
    assert verdict.correct is correct and verdict.score == float(correct)
    assert verdict.prediction == prediction


def test_numeric_feedback_strict_and_options() -> None:
    numeric = NumericVerifier()
    assert numeric.verify(task("18"), "17").feedback == "expected 18, got 17"
    assert numeric.verify(task("18"), "no idea").feedback == "no number in the answer 'no idea'"
    missing = numeric.verify(task("18"), None)
    assert missing.correct is False and "without finish" in missing.feedback
    unknown = numeric.verify(task("many"), "18")
    assert unknown.correct is None and unknown.label == "unknown"
    assert numeric.verify(task(True), "1").correct is None
    strict = NumericVerifier(NumericVerifier.Options(strict=True))
    assert strict.verify(task("18"), " 18 ").correct is True
    assert strict.verify(task("18"), "18.0").correct is False  # the reference code's exact string rule
    assert strict.verify(task("18"), "$18").correct is False
    whole = NumericVerifier(NumericVerifier.Options(last_number=False))
    assert whole.verify(task("18"), "I think 18").correct is False
    loose = NumericVerifier(NumericVerifier.Options(tolerance=0.01))
    assert loose.verify(task("2/3"), "0.67").correct is True


@pytest.mark.parametrize(("text", "normal"), [
    ("The Eiffel Tower!", "eiffel tower"), ("  A  cat, an apple ", "cat apple"), ("Theater", "theater"),
])
def test_squad_normalisation(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_qa_exact_match_and_f1() -> None:
    qa = QAVerifier()
    exact = qa.verify(task("Richard Strauss"), "richard strauss.")
    assert exact.correct is True and exact.metrics == {"em": 1.0, "f1": 1.0} and exact.score == 1.0
    partial = qa.verify(task("Richard Strauss"), "Strauss")
    assert partial.correct is False and partial.metrics["em"] == 0.0
    assert partial.metrics["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # precision 1, recall 1/2
    best_alias = qa.verify(task(["United States", "USA"]), "the USA")
    assert best_alias.correct is True
    assert qa.verify(task("yes"), "yes it is").metrics["f1"] == 0.0  # yes/no must match exactly (HotpotQA)
    assert qa.verify(task(True), "Yes").correct is True
    assert qa.verify(task("x"), None).metrics == {"em": 0.0, "f1": 0.0}
    assert qa.verify(task(None), "x").correct is None
    assert f1_score("w x y z", "y z q") == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert f1_score("a b c d", "c d e") == pytest.approx(2 / 3)  # the article "a" is dropped


@pytest.mark.parametrize(("gold", "prediction", "correct"), [
    (True, "Yes", True), (True, "yes.", True), (False, "No", True), (False, "Yes", False), (True, "true", True),
    ("Yes", "YES", True), (True, "Yes, because it is", False), (True, "Maybe", False), (True, "Not sure", False),
    (True, "Yes]\n\nBased on ...", False),
])
def test_yes_no(gold: object, prediction: str, correct: bool) -> None:
    assert YesNoVerifier().verify(task(gold), prediction).correct is correct


def test_yes_no_first_word_option_and_bad_gold() -> None:
    lenient = YesNoVerifier(YesNoVerifier.Options(first_word=True))
    assert lenient.verify(task(True), "Yes, because it is").correct is True
    assert lenient.verify(task(True), "Not sure").correct is False
    assert YesNoVerifier().verify(task("perhaps"), "Yes").correct is None
    assert YesNoVerifier().verify(task(True), "Maybe").feedback == "not a yes/no answer: 'Maybe'"


def test_registered() -> None:
    plugins = misstep.get_plugins()
    assert {"numeric", "qa", "yes-no"} <= set(plugins.names("verifier"))


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared reference data is absent")
def test_yes_no_reproduces_nat_rewards_on_released_trajectories() -> None:
    verifier = YesNoVerifier()
    checked = 0
    for name in ("positive", "negative"):
        for item in json.loads((SHARED_DATA / f"strategyqa/strategyqa_gpt-3.5_{name}.json").read_text()):
            info = item["info"]
            assert verifier.verify(task(info["gt"]), info.get("pred")).correct is info["reward"], info
            checked += 1
    assert checked == 2333
