"""The ``step-values`` stage: branch rollouts value each step, the first wrong step is the one success
depends on, interrupted runs resume without redoing or losing a branch; and ``step-pairs`` on its output."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import misstep
from misstep import load_recipe, read_jsonl, run_recipe
from misstep.agent import trajectory_key

from agent_components import Interrupter

PROMPT = misstep.PromptTemplate().render


def handmade(task_id: str, question: str, steps: list[str], observations: list[str], correct: bool,
             sample: int = 0) -> misstep.Trajectory:
    """A trajectory of the adder agent: the default prompt, then each step with its observation."""
    messages = list(PROMPT(question))
    for index, step in enumerate(steps):
        messages.append(misstep.Message(role="assistant", content=step))
        if index < len(observations):
            messages.append(misstep.Message(role="user", content=f"Observation: {observations[index]}"))
    return misstep.Trajectory(id=f"{task_id}#t0.7-s{sample}", task_id=task_id, messages=messages, prompt_len=3,
                              verdict=misstep.Verdict(correct=correct, score=float(correct)),
                              provenance=misstep.Provenance(temperature=0.7, sample=sample))


# 2+3+4 goes wrong at step 2 twice (adds 5, then 3, instead of 4: the two share their first step);
# 1+1+1 goes wrong at its last step (a copying slip); 6+1 is right (not valued by default).
TRAJECTORIES = [
    handmade("a", "2+3+4", ["Action: add[2, 3]", "Action: add[5, 5]", "Action: finish[10]"], ["5", "10"], False),
    handmade("a", "2+3+4", ["Action: add[2, 3]", "Action: add[5, 3]", "Action: finish[8]"], ["5", "8"], False, 1),
    handmade("b", "1+1+1", ["Action: add[1, 1]", "Action: add[2, 1]", "Action: finish[4]"], ["2", "3"], False),
    handmade("c", "6+1", ["Action: add[6, 1]", "Action: finish[7]"], ["7"], True),
]
TASKS = [{"id": "a", "question": "2+3+4", "answer": 9}, {"id": "b", "question": "1+1+1", "answer": 3},
         {"id": "c", "question": "6+1", "answer": 7}]


def recipe(tmp_path, tasks_file, write_recipe, **extra):
    source = tmp_path / "trajectories.jsonl"
    misstep.write_jsonl(source, TRAJECTORIES)
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in extra.items())
    return write_recipe(f"""
name: credit
stages:
  - use: tasks
    tasks: {{use: jsonl, path: {tasks_file(TASKS)}}}
  - use: step-values
    source: {{use: trajectories, path: {source}}}
    tasks: tasks
    backend: {{use: chain-adder}}
    tools: [add]
    verifier: exact
    branches: 3
    batch_size: 2
{lines}  - use: reformat
    name: pairs
    trajectories: step-values
    reformatter: step-pairs
""")


def valued(run_dir):
    return {t.id: t for t in read_jsonl(run_dir / "step-values" / "trajectories.jsonl", misstep.Trajectory)}


def test_the_step_success_depends_on_is_marked_and_paired(tmp_path, tasks_file, write_recipe, plugins):
    run = run_recipe(load_recipe(recipe(tmp_path, tasks_file, write_recipe), plugins=plugins),
                     run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    out = valued(tmp_path / "run")
    a, b, c = (out[f"{task}#t0.7-s0"] for task in "abc")
    assert a.verdict.steps.values == [1.0, 0.0, 0.0] and a.verdict.steps.start == 1.0
    assert a.verdict.first_wrong_step == 2
    assert b.verdict.steps.values == [1.0, 1.0, 0.0] and b.verdict.first_wrong_step == 3
    assert c.verdict.steps is None and c.verdict.first_wrong_step is None  # positives are not valued by default
    assert a.verdict.steps.branches == 3
    # point 1 (after add[2, 3]): every branch tried the right next step and succeeded
    assert {(s.message.content, s.correct) for s in a.verdict.steps.next[1]} == {("Action: add[5, 4]", True)}
    assert run.outputs["step-values"]["first_wrong_steps"] == {"2": 2, "3": 1}
    assert run.outputs["step-values"]["valued"] == 3

    pairs = list(read_jsonl(run.output("pairs", "examples"), misstep.PreferenceExample))
    assert [(p.chosen[0].content, p.rejected[0].content) for p in pairs] == [
        ("Action: add[5, 4]", "Action: add[5, 5]"), ("Action: add[5, 4]", "Action: add[5, 3]"),
        ("Action: finish[3]", "Action: finish[4]")]
    assert pairs[0].prompt == a.messages[:5]  # the prompt and the right first step with its observation
    assert pairs[0].metadata["point"] == 1 and pairs[0].metadata["task_id"] == "a"


def test_branches_from_equal_messages_are_shared(tmp_path, tasks_file, write_recipe, plugins):
    run_recipe(load_recipe(recipe(tmp_path, tasks_file, write_recipe, labels=["positive", "negative"]),
                           plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    branches = list(read_jsonl(tmp_path / "run" / "step-values" / "branches.jsonl", misstep.Trajectory))
    points = Counter(b.metadata["branch_point"] for b in branches)
    assert len(points) == 3 + 1 + 3 + 2 and set(points.values()) == {3}  # the two of task a share 2 points
    out = valued(tmp_path / "run")
    assert out["c#t0.7-s0"].verdict.steps.values == [1.0, 1.0]
    assert out["c#t0.7-s0"].verdict.first_wrong_step is None  # succeeded: no wrong step
    # every branch keeps its prefix and continues it
    branch = next(b for b in branches if b.metadata["branch_steps"] == 2 and b.task_id == "a")
    assert branch.messages[:7] == TRAJECTORIES[0].messages[:7] and branch.messages[7].content == "Action: finish[10]"


def test_an_interrupted_run_redoes_no_branch_and_loses_none(tmp_path, tasks_file, write_recipe, plugins):
    path = recipe(tmp_path, tasks_file, write_recipe)
    interrupter = Interrupter(after=7)
    plugins.add(interrupter, "interrupter")
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    store = tmp_path / "run" / "step-values" / "branches.jsonl"
    assert len(list(read_jsonl(store, misstep.Trajectory))) == 7  # stored, then announced and interrupted

    interrupter.after = None
    run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    keys = Counter(trajectory_key(t) for t in read_jsonl(store, misstep.Trajectory))
    assert len(keys) == 7 * 3 and set(keys.values()) == {1}  # 7 branch points x 3 branches, each once
    assert len(interrupter.seen) == 7 + 21 - 7  # the re-run produced only the missing branches
    assert valued(tmp_path / "run")["a#t0.7-s0"].verdict.first_wrong_step == 2


def test_a_verifier_that_judges_no_steps_is_refused(tmp_path, tasks_file, write_recipe, plugins):
    path = recipe(tmp_path, tasks_file, write_recipe, method="verifier")
    with pytest.raises(misstep.ComponentError, match="not a step verifier"):
        run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
