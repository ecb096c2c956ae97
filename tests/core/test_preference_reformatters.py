"""trajectory-pairs (success, failure) pairs of one task, the same as `misstep convert --to trl-dpo` writes, and
trajectory-labels (each labelled trajectory desirable or undesirable), through the reformat stage."""

import json

from click.testing import CliRunner
from test_pairs import labelled_set, trajectory

import misstep
from misstep import Message, PreferenceExample, Trajectory
from misstep.builtin.reformatters import TrajectoryLabels, TrajectoryPairs
from misstep.cli import cli
from misstep.formats.messages import write_messages
from misstep.jsonl import read_jsonl, write_jsonl


def react(task: str, number: int, answer: str, score: float) -> Trajectory:
    """A text-ReAct trajectory: observations in tool turns without call ids."""
    return trajectory(task, number, [Message(role="assistant", content="Action: calculate[3 * 4]"),
                                     Message(role="tool", content="Observation: 12"),
                                     Message(role="assistant", content=f"Action: Finish[{answer}]")], score)


def mixed_set() -> list[Trajectory]:
    """Native tool-calling trajectories (task a) and ReAct ones (tasks r and s), labelled, unlabelled included."""
    return [*labelled_set(), react("r", 0, "12", 1.0), react("r", 1, "13", 0.0), react("r", 2, "12", 1.0),
            react("s", 0, "7", 0.0), react("s", 1, "12", 1.0)]


def test_pairs_are_a_success_and_a_failure_of_the_same_task():
    trajectories = {t.id: t for t in mixed_set()}
    reformatter = TrajectoryPairs()
    pairs = list(reformatter.reformat(mixed_set(), {}))
    assert [(p.metadata["chosen_id"], p.metadata["rejected_id"]) for p in pairs] == [
        ("a#0", "a#1"), ("a#0", "a#2"), ("r#0", "r#1"), ("r#2", "r#1"), ("s#1", "s#0")]
    for pair in pairs:
        chosen, rejected = trajectories[pair.metadata["chosen_id"]], trajectories[pair.metadata["rejected_id"]]
        assert chosen.label == "positive" and rejected.label == "negative" and chosen.task_id == rejected.task_id
        assert [*pair.prompt, *pair.chosen] == chosen.messages and [*pair.prompt, *pair.rejected] == rejected.messages
    # ReAct sides share the call and the observation: they differ at the final answer only
    assert [m.content for m in pairs[2].chosen] == ["Action: Finish[12]"]
    assert reformatter.report() == {
        "trajectories": {"positive": 5, "negative": 5, "unknown": 1}, "tasks": 5,
        "tasks with a success and a failure": 3, "tasks paired": 3, "pairs": 5,
        "dropped": {"no shared prompt (the trajectories differ from the first message)": 0}}
    assert len(list(TrajectoryPairs(TrajectoryPairs.Options(per_task=1)).reformat(mixed_set(), {}))) == 3
    wide = TrajectoryPairs(TrajectoryPairs.Options(margin=0.9)).reformat(mixed_set(), {})
    assert [p.metadata["rejected_id"] for p in wide] == ["a#1", "r#1", "r#1", "s#0"]


def test_misstep_convert_to_trl_dpo_writes_the_same_pairs(tmp_path):
    write_jsonl(tmp_path / "trajectories.jsonl", mixed_set())
    misstep.get_plugins().register_commands(cli)  # what the `misstep` entry point does
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "trajectories.jsonl"), str(tmp_path / "dpo.jsonl"),
                                      "--from", "misstep", "--to", "trl-dpo"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    pairs = list(TrajectoryPairs().reformat(mixed_set(), {}))
    assert [row["id"] for row in rows] == [pair.id for pair in pairs]
    for row, pair in zip(rows, pairs):  # the reformatter's pairs written in TRL's format are convert's records
        for side in ("prompt", "chosen", "rejected"):
            assert row[side] == write_messages(getattr(pair, side), arguments_as_text=False, null_content=False)


def test_trajectory_labels_keeps_each_labelled_trajectory():
    reformatter = TrajectoryLabels()
    examples = list(reformatter.reformat(mixed_set(), {}))
    assert [(e.id, e.label) for e in examples][:3] == [("a#0", "desirable"), ("a#1", "undesirable"),
                                                       ("a#2", "undesirable")]
    assert len(examples) == 10 and reformatter.report() == {"kept": {"desirable": 5, "undesirable": 5},
                                                            "dropped": {"unlabelled (no verdict)": 1}}
    first = examples[0]
    assert [m.trained for m in first.messages] == [False, False, True, False, True]  # prompt and tool turns masked
    assert first.messages[2].tool_calls and first.reward == 1.0 and first.metadata["task_id"] == "a"


def test_the_reformat_stage_writes_preference_examples(tmp_path):
    write_jsonl(tmp_path / "trajectories.jsonl", mixed_set())
    recipe = misstep.validate_recipe({"name": "pairs", "model": {"path": "tiny"}, "stages": [
        {"use": "reformat", "source": {"use": "trajectories", "path": str(tmp_path / "trajectories.jsonl")},
         "reformatter": {"use": "trajectory-pairs", "per_task": 1}}]}, plugins=misstep.get_plugins())
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    pairs = list(read_jsonl(run.dir / run.outputs["reformat"]["examples"]["path"], PreferenceExample))
    assert len(pairs) == 3 and run.outputs["reformat"]["count"] == 3
    assert json.loads((run.dir / "reformat" / "summary.json").read_text())["pairs"] == 3
    assert [pair.metadata["task_id"] for pair in pairs] == ["a", "r", "s"]
