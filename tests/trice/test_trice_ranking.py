"""TRICE answer rules and the two reward schemes for candidate pools."""

from __future__ import annotations

import misstep
import pytest
from misstep.actions import Action
from misstep_trice.answers import TriceMath, TriceQA, gold_number, last_number, states_answer
from misstep_trice.execution import Execution
from misstep_trice.ranking import Judged, paper_rewards, reference_rewards

TASK = misstep.Task(id="t", question="q", answer="#### 72")


@pytest.mark.parametrize(("text", "value"), [
    ("The answer is 72.", 72.0), ("1,000 apples", 1000.0), ("-2.5", -2.5), ("2/3", 2 / 3),
    ("1.23457e+10", 1.23457e10), ("x2 and 3.5.", 3.5), ("5-3", 3.0), ("no number", None),
])
def test_last_number(text: str, value: float | None) -> None:
    assert last_number(text) == (pytest.approx(value) if value is not None else None)


def test_gold_numbers() -> None:
    assert gold_number(TASK) == 72.0
    assert gold_number("1,000") == 1000.0 and gold_number(9) == 9.0 and gold_number(True) is None


def test_math_verifier_rounds_to_two_decimals_and_reports_distance() -> None:
    verify = TriceMath().verify
    assert verify(TASK, "72.004").correct
    assert not verify(TASK, "72.01").correct
    assert verify(TASK, "It is 70").metrics["distance"] == pytest.approx(2.0)
    wrong = verify(TASK, "Error: division by zero (1/0)")
    assert wrong.correct is False and "distance" not in wrong.metrics


def test_qa_verifier_matches_any_alias() -> None:
    task = misstep.Task(id="q", question="?", answer=["Angels on horseback", "devils"])
    assert TriceQA().verify(task, " #1: They are called angels on horseback.").correct
    assert not TriceQA().verify(task, "pigs in blankets").correct


def judged(answer: str | None, *, tool: bool, gold: bool = False, task: misstep.Task = TASK) -> Judged:
    """A candidate whose answer is ``answer``: via a calculator call when ``tool``, else as plain text."""
    if tool:
        execution = Execution("calculator(x)", Action("calculator", "x", style="paren"), answer)
    else:
        execution = Execution(answer or "I do not know")
    verifier = TriceMath() if isinstance(gold_number(task), float) else TriceQA()
    return Judged("test", execution, verifier.verify(task, execution.answer), gold=gold)


POOL = [
    judged("72", tool=True, gold=True),   # gold, uses the tool
    judged("72", tool=False),             # correct, other decision
    judged("80", tool=True),              # wrong, distance 8
    judged("72", tool=True),              # correct, same decision
    judged("71", tool=False),             # wrong, distance 1
    judged(None, tool=False),             # wrong, no number
]


def test_paper_ranking_order() -> None:
    rewards = paper_rewards(POOL)
    order = sorted(range(len(POOL)), key=lambda i: -rewards[i])
    assert order == [0, 3, 1, 4, 2, 5]
    assert rewards[4] > rewards[2] > rewards[5] == 0.0


def test_paper_ranking_without_gold_puts_all_correct_together() -> None:
    rewards = paper_rewards(POOL[1:])
    assert rewards[0] == rewards[2] == 3.0


def test_reference_scheme() -> None:
    # gold and correct-same 20, correct-other 15; wrong start at 10 (a 15 was given), by distance, floored
    assert reference_rewards(POOL) == [20.0, 15.0, 5.0, 20.0, 10.0, 0.0]
    # no correct-other candidate: wrong ones start at 15
    assert reference_rewards([POOL[0], POOL[4], POOL[2]]) == [20.0, 15.0, 10.0]


def test_reference_scheme_qa_wrong_share_one_score() -> None:
    task = misstep.Task(id="q", question="?", answer=["Paris"])
    pool = [judged("Paris", tool=False, gold=True, task=task), judged("Lyon", tool=True, task=task),
            judged("Nice", tool=False, task=task)]
    assert reference_rewards(pool) == [20.0, 15.0, 15.0]
    assert paper_rewards(pool) == [4.0, 0.0, 0.0]


@pytest.mark.parametrize(("answer", "argument", "leaked"), [
    ("#### 72", "72", True), ("#### 72", " 72.0 ", True), ("#### 72", "'72'", True), ("#### 72", "48+24", False),
    ("#### 72", "71", False), ("#### 5", "5*2-5", False),
    (["Bulgaria"], "Nina Dobrev nationality", False), (["Bulgaria"], "Nina Dobrev Bulgaria", True),
    (["Paris"], "Parisian cafes", False), (["eighteen", "18"], "18", True),
])
def test_calls_that_restate_the_gold_answer(answer: object, argument: str, leaked: bool) -> None:
    assert states_answer(misstep.Task(id="t", question="q", answer=answer), argument) is leaked
