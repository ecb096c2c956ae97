"""The ``collect`` stage: temperatures x samples per task, verified and stored; interrupted runs resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import misstep
from misstep import load_recipe, read_jsonl, run_recipe
from misstep.agent import trajectory_key

from agent_components import Interrupter

ROWS = [
    {"id": "a", "question": "2+3", "answer": 5},
    {"id": "b", "question": "1+1", "answer": 2},
    {"id": "c", "question": "4+4", "answer": 8},
]
REPLIES = {
    "2+3": ["Thought: add\nAction: add[2, 3]", "Action: finish[5]"],
    "1+1": ["Thought: easy\nAction: finish[3]"],
    "4+4": ["Thought: let me think"],
}


def recipe_text(tasks, **extra):
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in extra.items())
    return f"""
name: collecting
stages:
  - use: collect
    tasks: {{use: jsonl, path: {tasks}}}
    backend: {{use: scripted, replies: {json.dumps(REPLIES)}}}
    tools: [add]
    verifier: exact
{lines}"""


def stored(run_dir):
    return list(read_jsonl(run_dir / "collect" / "trajectories.jsonl", misstep.Trajectory))


def test_collect_runs_each_task_at_each_temperature_and_sample(tmp_path, tasks_file, write_recipe, plugins):
    watcher = Interrupter()
    plugins.add(watcher, "watcher")
    recipe = load_recipe(write_recipe(recipe_text(tasks_file(ROWS), temperatures=[0.2, 0.7], samples=2)),
                         plugins=plugins)
    run = run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    outputs = run.outputs["collect"]
    trajectories = stored(tmp_path / "run")
    keys = Counter(trajectory_key(t) for t in trajectories)
    assert set(keys) == {(task, temp, sample) for task in "abc" for temp in (0.2, 0.7) for sample in (0, 1)}
    assert set(keys.values()) == {1}
    assert outputs["count"] == 12 and outputs["positives"] == 4 and outputs["negatives"] == 8
    assert sorted(watcher.seen) == sorted(t.id for t in trajectories)
    labels = {t.task_id: t.label for t in trajectories}
    assert labels == {"a": "positive", "b": "negative", "c": "negative"}
    tasks = list(read_jsonl(tmp_path / "run" / "collect" / "tasks.jsonl", misstep.Task))
    assert [t.id for t in tasks] == ["a", "b", "c"]
    assert all(t.provenance.source == "collect" and t.provenance.model == "scripted" for t in trajectories)


def test_interrupted_collection_resumes_with_one_record_per_rollout(tmp_path, tasks_file, write_recipe, plugins):
    path = write_recipe(recipe_text(tasks_file(ROWS), batch_size=2))
    interrupter = Interrupter(after=4)
    plugins.add(interrupter, "interrupter")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert len(stored(tmp_path / "run")) == 4  # the 4th was stored, then announced (and interrupted)

    interrupter.after = None
    run = run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    keys = Counter(trajectory_key(t) for t in stored(tmp_path / "run"))
    assert len(keys) == 9 and set(keys.values()) == {1}  # 3 tasks x 3 default temperatures, once each
    assert run.outputs["collect"]["count"] == 9
    assert len(interrupter.seen) == 4 + 5  # the re-run produced only the 5 missing trajectories


def test_an_observer_that_raises_loses_no_trajectory(tmp_path, tasks_file, write_recipe, plugins):
    observer = Interrupter(after=2, error=RuntimeError("dashboard is down"))
    plugins.add(observer, "observer")
    path = write_recipe(recipe_text(tasks_file(ROWS), batch_size=2))
    with pytest.warns(misstep.plugins.PluginWarning, match="'observer': its trajectory_produced hook raised "
                      "RuntimeError: dashboard is down"):
        run = run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert run.outputs["collect"]["count"] == 9 and len(stored(tmp_path / "run")) == 9
    assert len(observer.seen) == 2  # reported once, then no longer called


def test_a_line_cut_by_a_crash_is_set_aside_and_produced_again(tmp_path, tasks_file, write_recipe, plugins):
    path = write_recipe(recipe_text(tasks_file(ROWS)))
    run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    store = tmp_path / "run" / "collect" / "trajectories.jsonl"
    lines = store.read_text().splitlines(keepends=True)
    store.write_text("".join(lines[:-2]) + lines[-2][:40])  # the last record lost, the one before it cut
    (tmp_path / "run" / "collect" / "stage.json").unlink()  # as if the stage had never finished

    run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    keys = Counter(trajectory_key(t) for t in stored(tmp_path / "run"))
    assert len(keys) == 9 and set(keys.values()) == {1}
    assert (store.parent / "trajectories.jsonl.partial").read_text() == lines[-2][:40] + "\n"


def test_duplicate_task_ids_are_refused(tmp_path, tasks_file, write_recipe, plugins):
    rows = tasks_file([{"id": "x", "question": "1+1", "answer": 2}] * 2)
    recipe = load_recipe(write_recipe(recipe_text(rows)), plugins=plugins)
    with pytest.raises(misstep.DataError, match="two tasks share the id 'x'"):
        run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)


def test_bad_options_are_recipe_errors(tasks_file, write_recipe, plugins):
    with pytest.raises(misstep.RecipeError) as error:
        load_recipe(write_recipe(recipe_text(tasks_file(ROWS), temperatures=[-1], max_turns=0)), plugins=plugins)
    assert "temperatures[0]" in str(error.value) and "max_turns" in str(error.value)


@pytest.mark.parametrize(("temperatures", "same"), [
    ([0.2, 0.5, 0.2], "0.2 and 0.2"),
    ([0.2, 0.2000001], "0.2 and 0.2000001"),  # equal at the store's 6 decimals
    ([12.345671, 12.345674], "12.345671 and 12.345674"),  # distinct keys, one trajectory id (t12.3457)
])
def test_temperatures_naming_the_same_rollouts_are_refused(tasks_file, write_recipe, plugins, temperatures, same):
    with pytest.raises(misstep.RecipeError) as error:
        load_recipe(write_recipe(recipe_text(tasks_file(ROWS), temperatures=temperatures)), plugins=plugins)
    problem = error.value.problems[0]
    assert problem.path == "stages[0].temperatures" and problem.line == 8  # the `temperatures:` line
    assert f"temperatures {same} name the same rollouts" in problem.message and "list each temperature once" in \
        problem.message
