"""TriPosT's scripted verifier as a step verifier: the ``step-values`` stage with ``method: verifier`` marks
the first wrong line of an attempt, and ``correct-prefix`` trains the lines before it."""

from __future__ import annotations

import misstep

from misstep_tripost.arithmetic import INFO
from misstep_tripost.checking import complete
from misstep_tripost.families import FAMILIES
from misstep_tripost.text import parse_steps, render_interaction, render_steps

QUESTION = "((5 * 3 - 8) + (4 + 6 + 5)) ="
GOLD = complete(FAMILIES["multistep_arithmetic"].machine(QUESTION))
WRONG = parse_steps(render_steps(GOLD).replace("(15 - 8) = 7.", "(15 - 8) = 8.").replace("(7 + 15) = 22", "(8 + 15) = 23")
                    .replace("is 22.", "is 23."))


def attempt(steps, sample: int) -> misstep.Trajectory:
    text = render_interaction(INFO, [steps], [])
    return misstep.Trajectory(
        id=f"t1#{sample}", task_id="t1", prompt_len=1, verdict=misstep.Verdict(correct=steps is GOLD),
        messages=[misstep.Message(role="user", content=f"Q: {QUESTION}"),
                  misstep.Message(role="assistant", content=text)],
        provenance=misstep.Provenance(sample=sample))


def test_the_first_wrong_line_is_marked_and_only_the_lines_before_it_are_trained(tmp_path, write_recipe, plugins):
    source = tmp_path / "attempts.jsonl"
    misstep.write_jsonl(source, [attempt(WRONG, 0), attempt(GOLD, 1)])
    tasks = tmp_path / "tasks.jsonl"
    misstep.write_jsonl(tasks, [misstep.Task(id="t1", question=QUESTION, answer=22, dataset="multistep_arithmetic")])
    recipe = write_recipe(f"""
        name: tripost-steps
        stages:
          - {{use: tasks, tasks: {{use: jsonl, path: {tasks}, dataset: multistep_arithmetic}}}}
          - use: step-values
            source: {{use: trajectories, path: {source}}}
            tasks: tasks
            method: verifier
            verifier: tripost-scripted
            labels: [positive, negative]
        """)
    run = misstep.run_recipe(misstep.load_recipe(recipe, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins,
                             quiet=True)
    wrong, right = misstep.read_jsonl(run.output("step-values", "trajectories"), misstep.Trajectory)
    text = wrong.messages[1].content
    assert wrong.verdict.first_wrong_step == 2 and wrong.verdict.steps.values[:3] == [1.0, 0.0, 0.0]
    assert len(wrong.verdict.steps.spans) == len(WRONG) and wrong.verdict.steps.branches == 0
    second = wrong.verdict.steps.spans[1]
    assert text[second.start:second.end] == WRONG[1].line()
    assert set(right.verdict.steps.values) == {1.0} and right.verdict.first_wrong_step is None
    assert run.outputs["step-values"]["first_wrong_steps"] == {"2": 1}

    (turn,) = misstep.correct_prefix(wrong, wrong_weight=-1)
    header_and_step_1 = text[: second.start]
    assert header_and_step_1.endswith(WRONG[0].line() + "\n") and header_and_step_1.startswith("Answer:")
    assert [(s.start, s.end, s.weight) for s in turn.spans] == [(0, second.start, 1.0), (second.start, second.end, -1.0)]
    assert turn.weight == 0.0
