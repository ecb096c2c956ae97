"""Self-improving inference turn by turn (``tripost-evaluate``): a scripted model that needs three updates
reaches the right answer on the third; one that never converges stops at 10 attempts; the stop rules."""

from __future__ import annotations

import json
from pathlib import Path

import misstep
import pytest
from misstep.recipe import validate_recipe

from misstep_tripost.arithmetic import INFO
from misstep_tripost.evaluate import Prediction, Reading, summarize
from misstep_tripost.families import FAMILIES
from misstep_tripost.tasks import ArithmeticTasks
from misstep_tripost.text import Step, answer_header, render_interaction, render_steps
from misstep_tripost.verifiers import ScriptedVerifier

FAMILY = FAMILIES["multistep_arithmetic"]
TEST_SETS = [{"use": "tripost-arithmetic", "split": "test", "count": 2, "lengths": [3], "depths": [1]},
             {"use": "tripost-arithmetic", "split": "test", "count": 1, "lengths": [5], "depths": [1]}]


def evaluate(plugins: misstep.Plugins, folder: Path, **backend: object) -> tuple[dict, list[Prediction]]:
    recipe = validate_recipe({"name": "infer", "stages": [{
        "use": "tripost-evaluate", "tasks": TEST_SETS, "backend": {"use": "tripost-self-improver", **backend}}]},
        plugins=plugins)
    run = misstep.run_recipe(recipe, run_dir=folder, plugins=plugins, quiet=True)
    predictions = list(misstep.read_jsonl(folder / "tripost-evaluate" / "predictions.jsonl", Prediction))
    return run.outputs["tripost-evaluate"], predictions


def off_by(question: str, off: int) -> list[Step]:
    from tripost_components import off_by as scripted

    return scripted(question, off)


def test_three_updates_reach_the_right_answer_turn_by_turn(plugins: misstep.Plugins, tmp_path: Path) -> None:
    from tripost_components import SelfImproverBackend

    outputs, predictions = evaluate(plugins, tmp_path)  # each reply: feedback and one update, as trained
    assert [(p.attempts, p.rounds, p.stop, p.first_correct, p.final_correct) for p in predictions] == [
        (4, 4, "correct", False, True)] * 3  # answers off by 3, 2, 1, then right, which it says
    assert (outputs["accuracy"], outputs["first_accuracy"], outputs["helped"], outputs["attempts"]) == (1.0, 0.0, 3, 4.0)
    metrics = json.loads((tmp_path / "tripost-evaluate" / "metrics.json").read_text())["metrics"]
    assert list(metrics) == ["all", "seen", "unseen"] and metrics["seen"]["count"] == 2
    table = (tmp_path / "tripost-evaluate" / "metrics.md").read_text()
    assert "| difficulty | count | accuracy | first accuracy | helped | hurt | attempts | stopped correct |" in table
    assert "| all | 3 | 100.00% | 0.00% | 3 | 0 | 4.00 | 3 |" in table
    # after each reply the model is prompted again with the question and its latest attempt alone
    first = next(iter(ArithmeticTasks(ArithmeticTasks.Options(split="test", count=2, lengths=[3], depths=[1])).load()))
    first_question, header = first.question, answer_header(INFO)
    assert SelfImproverBackend.prefills[0] == ""  # the question alone
    assert f"{header}\n{render_steps(off_by(first_question, 2))}\nFeedback:" in SelfImproverBackend.prefills
    assert f"{header}\n{render_steps(off_by(first_question, 0))}\nFeedback:" in SelfImproverBackend.prefills
    interaction = predictions[0].interaction
    assert interaction.count("Updated Answer:") == 3 and interaction.endswith("The final response is also correct.")


def test_a_model_that_never_converges_stops_at_ten_attempts(plugins: misstep.Plugins, tmp_path: Path) -> None:
    from tripost_components import SelfImproverBackend

    outputs, predictions = evaluate(plugins, tmp_path, first_off=1, converges=False, one_turn_at_a_time=True)
    # one turn per reply: attempt, feedback, update, ... the 11th attempt is not read
    assert [(p.attempts, p.rounds, p.stop, p.final_correct) for p in predictions] == [(10, 21, "limit", False)] * 3
    assert (outputs["accuracy"], outputs["attempts"]) == (0.0, 10.0)
    updated = [p for p in SelfImproverBackend.prefills if p.endswith(answer_header(INFO, updated=True))]
    assert len(updated) == 3 * 10  # after each of its 10 feedbacks it was asked for the update
    assert all(p.count("Answer:") == 2 and p.count("Feedback:") == 1 for p in updated)  # the latest attempt only


@pytest.fixture
def task() -> misstep.Task:
    return next(iter(ArithmeticTasks(ArithmeticTasks.Options(count=1, lengths=[3], depths=[1], seed=4)).load()))


def reading(task: misstep.Task, *replies: str, max_attempts: int = 10) -> Reading:
    result = Reading(task, FAMILY, max_attempts)
    for reply in replies:
        assert not result.stop
        result.read(reply)
    return result


def test_stop_rules(task: misstep.Task) -> None:
    gold, bad, worse = off_by(task.question, 0), off_by(task.question, 1), off_by(task.question, 2)
    feedback, worse_feedback = (ScriptedVerifier().critique([task], [steps])[0] for steps in (bad, worse))
    right = ScriptedVerifier().critique([task], [gold])[0]

    def text(*attempts: list[Step], feedbacks: tuple = ()) -> str:
        return render_interaction(INFO, list(attempts), list(feedbacks))

    corrected = reading(task, text(bad, gold, feedbacks=(feedback,)), f" {right.text()}")
    assert (len(corrected.attempts), corrected.stop, corrected.prediction().final_correct) == (2, "correct", True)
    believed = reading(task, text(bad, feedbacks=(right,)))  # it says its wrong answer is right: stop there
    assert (believed.stop, believed.prediction().final_correct) == ("correct", False)
    same_attempt = reading(task, text(bad, bad, feedbacks=(feedback,)))
    assert (len(same_attempt.attempts), same_attempt.stop) == (1, "repeat")
    same_feedback = reading(task, text(bad, worse, feedbacks=(feedback, feedback)))
    assert (len(same_feedback.attempts), same_feedback.stop) == (2, "repeat")
    limited = reading(task, text(bad, worse, feedbacks=(feedback, worse_feedback)), max_attempts=1)
    assert (len(limited.attempts), limited.stop) == (1, "limit")
    hurt = reading(task, text(gold, bad, feedbacks=(feedback,)), "")  # nothing more to say: it ends
    prediction = hurt.prediction()
    assert (prediction.first_correct, prediction.final_correct, hurt.stop, prediction.rounds) == (True, False, "end", 2)
    nothing = reading(task, "garbage").prediction()
    assert (nothing.attempts, nothing.final_correct, nothing.stop) == (0, False, "unparsable")


def test_without_self_improvement_only_the_first_attempt_is_read(plugins: misstep.Plugins, tmp_path: Path) -> None:
    recipe = validate_recipe({"name": "baseline", "stages": [{
        "use": "tripost-evaluate", "tasks": TEST_SETS, "self_improve": False,
        "backend": {"use": "tripost-self-improver", "first_off": 0}}]}, plugins=plugins)
    outputs = misstep.run_recipe(recipe, run_dir=tmp_path, plugins=plugins, quiet=True).outputs["tripost-evaluate"]
    predictions = list(misstep.read_jsonl(tmp_path / "tripost-evaluate" / "predictions.jsonl", Prediction))
    assert [(p.attempts, p.rounds) for p in predictions] == [(1, 1)] * 3 and outputs["accuracy"] == 1.0


def test_summary_counts_helped_and_hurt_per_difficulty() -> None:
    def prediction(difficulty: str, first: bool, final: bool) -> Prediction:
        return Prediction(task_id=f"{difficulty}{first}{final}", difficulty=difficulty, interaction="", replies=[],
                          first_correct=first, final_correct=final, attempts=2, rounds=2, stop="correct")

    predictions = [prediction("seen", False, True), prediction("seen", True, True), prediction("unseen", True, False),
                   prediction("unseen", False, False)]
    metrics = misstep.grouped_metrics(predictions, lambda p: p.difficulty, summarize, always=True)
    assert list(metrics) == ["all", "seen", "unseen"]
    assert metrics["seen"]["accuracy"] == 1.0 and metrics["seen"]["first_accuracy"] == 0.5
    assert (metrics["all"]["helped"], metrics["all"]["hurt"], metrics["all"]["accuracy"]) == (1, 1, 0.5)
