"""The ``evaluate`` stage: hand-checked metrics, per-dataset rows, the stored reformatter's inference prompt."""

from __future__ import annotations

import json

import pytest

import misstep
from misstep import load_recipe, read_jsonl, run_recipe

A = [
    {"id": "a1", "question": "2+3", "answer": 5},
    {"id": "a2", "question": "1+1", "answer": 2},
    {"id": "a3", "question": "3+3", "answer": 6},
]
B = [
    {"id": "b1", "question": "4+4", "answer": 8},
    {"id": "b2", "question": "5+5", "answer": 10},
]
REPLIES = {
    "2+3": ["Thought: add\nAction: add[2, 3]", "Action: finish[5]"],  # right, 2 turns
    "1+1": ["Thought: I just know it"],  # action error, 1 turn
    "3+3": ["Action: add[3, 3]", "Action: add[0, 6]", "Action: finish[6]"],  # right, 3 turns
    "4+4": ["Action: finish[9]"],  # wrong, 1 turn
    "5+5": ["Action: add[5, 5]", "Action: finish[10]"],  # right, 2 turns
}


def recipe_text(a, b, extra=""):
    return f"""
name: evaluating
stages:
  - use: evaluate
    tasks: [{{use: jsonl, path: {a}}}, {{use: jsonl, path: {b}}}]
    backend: {{use: scripted, replies: {json.dumps(REPLIES)}}}
    tools: [add]
    verifier: exact
{extra}"""


@pytest.fixture
def files(tasks_file):
    return tasks_file(A, "arith.jsonl"), tasks_file(B, "sums.jsonl")


def test_evaluation_reproduces_hand_checked_metrics(tmp_path, files, write_recipe, plugins):
    run = run_recipe(load_recipe(write_recipe(recipe_text(*files)), plugins=plugins), run_dir=tmp_path / "run",
                     plugins=plugins, quiet=True)
    folder = tmp_path / "run" / "evaluate"
    metrics = json.loads((folder / "metrics.json").read_text())
    # by hand: 3 of 5 right; turns 2+1+3+1+2 = 9; one action error; per file: arith 6 turns, sums 3 turns
    assert metrics["metrics"]["all"] == pytest.approx(
        {"count": 5, "accuracy": 0.6, "avg_turns": 1.8, "action_error_rate": 1 / 9, "em": 0.6})
    assert metrics["metrics"]["arith"] == pytest.approx(
        {"count": 3, "accuracy": 2 / 3, "avg_turns": 2.0, "action_error_rate": 1 / 6, "em": 2 / 3})
    assert metrics["metrics"]["sums"] == pytest.approx(
        {"count": 2, "accuracy": 0.5, "avg_turns": 1.5, "action_error_rate": 0.0, "em": 0.5})
    assert metrics["inference_prompt"] is None and metrics["temperature"] == 0
    table = (folder / "metrics.md").read_text()
    assert "| all | 5 | 60.00% | 60.00% | 11.11% | 1.80 |" in table
    assert "| arith | 3 | 66.67% | 66.67% | 16.67% | 2.00 |" in table
    outputs = run.outputs["evaluate"]
    assert outputs["accuracy"] == 0.6 and outputs["count"] == 5
    trajectories = list(read_jsonl(folder / "trajectories.jsonl", misstep.Trajectory))
    assert {t.provenance.temperature for t in trajectories} == {0.0} and len(trajectories) == 5


def model_folder(tmp_path, reformatter):
    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "misstep.json").write_text(json.dumps({"reformatter": reformatter}))
    return folder


def question_turns(run_dir):
    trajectories = read_jsonl(run_dir / "evaluate" / "trajectories.jsonl", misstep.Trajectory)
    return {t.messages[t.prompt_len - 1].content for t in trajectories}


def test_the_reformatter_stored_with_the_model_rewrites_every_prompt(tmp_path, files, write_recipe, plugins):
    folder = model_folder(tmp_path, {"use": "hint", "text": " Be right."})
    recipe = load_recipe(write_recipe(recipe_text(*files, f"    model: {{path: {folder}}}\n")), plugins=plugins)
    run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert all(content.endswith("Be right.") for content in question_turns(tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert metrics["inference_prompt"] == "hint" and metrics["model"] == str(folder)
    assert "inference prompt of reformatter `hint`" in (tmp_path / "run" / "evaluate" / "metrics.md").read_text()


def test_the_model_can_come_from_an_earlier_stage(tmp_path, files, write_recipe, plugins):
    class Publish(misstep.Stage):
        """Stands in for `train`: outputs a model folder that carries misstep.json."""

        name = "publish"

        def run(self, ctx):
            return {"model": model_folder(ctx.dir, {"use": "hint"})}

    class StagePlugin:
        @misstep.hookimpl
        def register_stages(self, register):
            register(Publish)

    plugins.add(StagePlugin(), "publish")
    text = recipe_text(*files, "    model: publish\n").replace("stages:\n", "stages:\n  - use: publish\n")
    run = run_recipe(load_recipe(write_recipe(text), plugins=plugins), run_dir=tmp_path / "run", plugins=plugins,
                     quiet=True)
    assert all(content.endswith("Solve it correctly.") for content in question_turns(tmp_path / "run"))
    assert run.outputs["evaluate"]["inference_prompt"] == "hint"


def test_inference_prompt_can_be_switched_off(tmp_path, files, write_recipe, plugins):
    folder = model_folder(tmp_path, {"use": "hint"})
    extra = f"    model: {{path: {folder}}}\n    inference_prompt: false\n"
    run_recipe(load_recipe(write_recipe(recipe_text(*files, extra)), plugins=plugins), run_dir=tmp_path / "run",
               plugins=plugins, quiet=True)
    assert question_turns(tmp_path / "run") == {f"Question: {row['question']}" for row in A + B}


def test_a_stored_reformatter_that_is_not_installed_is_a_clear_error(tmp_path, files, write_recipe, plugins):
    folder = model_folder(tmp_path, {"use": "gone", "hint": "x"})
    recipe = load_recipe(write_recipe(recipe_text(*files, f"    model: {{path: {folder}}}\n")), plugins=plugins)
    with pytest.raises(misstep.ComponentError, match="reformatter .*'gone'.* cannot be built here.*inference_prompt"):
        run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)


def test_model_must_name_an_earlier_stage(files, write_recipe, plugins):
    with pytest.raises(misstep.RecipeError, match="'train' is not an earlier stage"):
        load_recipe(write_recipe(recipe_text(*files, "    model: train\n")), plugins=plugins)
