"""Evaluation metrics on a hand-checked fixture."""

from __future__ import annotations

import json

import pytest

import misstep
from misstep import markdown_table
from misstep.agent import report
from misstep.prompts import PromptTemplate

PROMPT = PromptTemplate().render("q")  # instruction, acknowledgement, question: 3 messages


def trajectory(id, dataset, correct, turns, action_error=False, **metrics):
    messages = list(PROMPT)
    for turn in range(turns):
        messages.append(misstep.Message(role="assistant", content=f"Action: step[{turn}]"))
        if turn < turns - 1:
            messages.append(misstep.Message(role="user", content="Observation: ok"))
    return misstep.Trajectory(
        id=id, task_id=id, messages=messages, prompt_len=len(PROMPT),
        verdict=misstep.Verdict(correct=correct, metrics=metrics),
        metadata={"action_errors": int(action_error)},
    )


FIXTURE = [
    trajectory("g1", "gsm", True, 2),
    trajectory("g2", "gsm", False, 1, action_error=True),
    trajectory("g3", "gsm", True, 3),
    trajectory("h1", "hotpot", False, 2, em=0.0, f1=0.5),
    trajectory("h2", "hotpot", True, 1, em=1.0, f1=1.0),
]
TASKS = {t.id: misstep.Task(id=t.id, question="q", dataset="gsm" if t.id.startswith("g") else "hotpot") for t in FIXTURE}


def test_metrics_match_the_hand_computed_values():
    result = report(FIXTURE, TASKS)
    # by hand: 3 of 5 correct; turns 2+1+3+2+1 = 9; one action error in 9 turns; EM/F1 over the 2 QA items
    assert result["all"] == pytest.approx(
        {"count": 5, "accuracy": 0.6, "avg_turns": 1.8, "action_error_rate": 1 / 9, "em": 0.5, "f1": 0.75})
    assert result["gsm"] == pytest.approx({"count": 3, "accuracy": 2 / 3, "avg_turns": 2.0, "action_error_rate": 1 / 6})
    assert result["hotpot"] == pytest.approx(
        {"count": 2, "accuracy": 0.5, "avg_turns": 1.5, "action_error_rate": 0.0, "em": 0.5, "f1": 0.75})


def test_the_acknowledgement_turn_is_not_an_agent_turn_and_unknown_verdicts_are_wrong():
    unjudged = trajectory("x", "gsm", None, 2)
    assert report([unjudged], {})["all"] == pytest.approx(
        {"count": 1, "accuracy": 0.0, "avg_turns": 2.0, "action_error_rate": 0.0})


def test_one_dataset_gives_one_row_and_no_trajectories_give_zeros():
    assert list(report(FIXTURE[:3], TASKS)) == ["all"]
    assert report([], {})["all"] == {"count": 0, "accuracy": 0.0, "action_error_rate": 0.0, "avg_turns": 0.0}


def test_markdown_table():
    table = markdown_table(report(FIXTURE, TASKS))
    assert table.splitlines() == [
        "| dataset | count | accuracy | em | f1 | action error rate | avg turns |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| gsm | 3 | 66.67% |  |  | 16.67% | 2.00 |",
        "| hotpot | 2 | 50.00% | 50.00% | 75.00% | 0.00% | 1.50 |",
        "| all | 5 | 60.00% | 50.00% | 75.00% | 11.11% | 1.80 |",
    ]


def test_one_summary_for_any_rows_with_extra_metrics(tmp_path):
    """What trice-evaluate and tripost-evaluate report fits the same summary: tool-use rate, attempts."""
    rows = [("seen", True, 1, False), ("seen", False, 3, True), ("unseen", True, 2, True)]

    def summary(group):
        return {"count": len(group), "accuracy": sum(r[1] for r in group) / len(group),
                "tool_use_rate": sum(r[3] for r in group) / len(group), "attempts": sum(r[2] for r in group) / len(group)}

    result = misstep.grouped_metrics(rows, lambda r: r[0], summary, always=True)
    assert list(result) == ["all", "seen", "unseen"]
    assert list(misstep.grouped_metrics(rows[:2], lambda r: r[0], summary)) == ["all"]  # one group: no rows for it
    metrics, table_path, table = misstep.save_metrics(tmp_path, result, info={"model": "m"}, title="Model m.",
                                                      label="difficulty")
    assert table.splitlines() == [
        "| difficulty | count | accuracy | tool use rate | attempts |",
        "| --- | ---: | ---: | ---: | ---: |",
        "| seen | 2 | 50.00% | 50.00% | 2.00 |",
        "| unseen | 1 | 100.00% | 100.00% | 2.00 |",
        "| all | 3 | 66.67% | 66.67% | 2.00 |",
    ]
    assert table_path.read_text() == f"Model m.\n\n{table}"
    assert json.loads(metrics.read_text()) == {"model": "m", "metrics": result}
