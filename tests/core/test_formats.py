"""Trajectory formats and `misstep convert`: imports, exact round trips, located errors."""

import json
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner

from misstep import DataError, Message, MisstepError, ToolCall, Trajectory, Verdict
from misstep.builtin import convert
from misstep.builtin.files import TrajectoryFile
from misstep.cli import Cli
from misstep.formats import FORMATS, FieldMap, FormatName, read_trajectories, write_trajectories
from misstep.plugins import Plugins

SCHEMA = {"type": "function", "function": {"name": "calculate", "description": "Evaluate an arithmetic expression.",
                                           "parameters": {"type": "object",
                                                          "properties": {"expression": {"type": "string"}},
                                                          "required": ["expression"]}}}


def openai_record(task: str, trial: int, answer: str, reward: float) -> dict:
    """A multi-turn tool-calling trajectory as an OpenAI-format log writes it, messages under `conversation`."""
    question = {"a": "What is 3 * 4 + 1?", "b": "What is 7 * 6?"}[task]
    expression = {"a": "3 * 4 + 1", "b": "7 * 6"}[task]
    return {
        "task_id": task, "reward": reward, "model": "gpt-x", "tools": [SCHEMA],
        "conversation": [
            {"role": "system", "content": "Solve the problem with the calculator."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{task}{trial}", "type": "function",
                "function": {"name": "calculate", "arguments": json.dumps({"expression": expression})}}]},
            {"role": "tool", "tool_call_id": f"call_{task}{trial}", "name": "calculate", "content": answer},
            {"role": "assistant", "content": f"The answer is {answer}."},
        ],
    }


@pytest.fixture
def openai_file(tmp_path: Path) -> Path:
    records = [openai_record("a", 0, "13", 1.0), openai_record("a", 1, "12", 0.0), openai_record("a", 2, "13", 1.0),
               openai_record("b", 0, "42", 1.0), openai_record("b", 1, "36", 0.25)]
    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


MAPPING = FieldMap(messages_field="conversation")


def test_openai_import_splits_by_reward_and_exports_back_unchanged(openai_file, tmp_path):
    trajectories = list(read_trajectories(openai_file, "openai", MAPPING))
    assert [t.label for t in trajectories] == ["positive", "negative", "positive", "positive", "negative"]
    assert [(t.task_id, t.provenance.sample) for t in trajectories] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    first = trajectories[0]
    assert first.prompt_len == 2 and first.tools == [SCHEMA] and first.metadata == {"model": "gpt-x"}
    call = first.messages[2].tool_calls[0]
    assert (call.id, call.name, call.arguments) == ("call_a0", "calculate", {"expression": "3 * 4 + 1"})
    assert first.messages[2].content == "" and first.messages[3].tool_call_id == "call_a0"
    assert trajectories[4].verdict.score == 0.25

    out = tmp_path / "back.jsonl"
    assert write_trajectories(out, trajectories, "openai", MAPPING) == 5
    original = [json.loads(line) for line in openai_file.read_text().splitlines()]
    back = [json.loads(line) for line in out.read_text().splitlines()]
    for before, after in zip(original, back):
        assert after.pop("id") == f"{before['task_id']}#{original.index(before) - (3 if before['task_id'] == 'b' else 0)}"
        assert after == before  # messages, call ids, argument strings, rewards, tools and other fields


@pytest.mark.parametrize("target", ["openai", "trl-sft", "sharegpt", "misstep"])
def test_import_then_export_is_exact_through_every_trajectory_format(openai_file, tmp_path, target):
    trajectories = list(read_trajectories(openai_file, "openai", MAPPING))
    if target == "sharegpt":  # no call ids in sharegpt: they are numbered on reading
        trajectories = [t.model_copy(update={"messages": [m.model_copy(update={
            "tool_calls": [c.model_copy(update={"id": "call_0"}) for c in m.tool_calls],
            "tool_call_id": "call_0" if m.tool_call_id else None}) for m in t.messages]}) for t in trajectories]
    path = tmp_path / f"out.{target}.jsonl"
    write_trajectories(path, trajectories, target)
    back = list(read_trajectories(path, target))
    for before, after in zip(trajectories, back, strict=True):
        assert after.messages == before.messages
        assert (after.id, after.task_id, after.verdict.score, after.label) == \
            (before.id, before.task_id, before.verdict.score, before.label)
        assert after.tools == before.tools and after.prompt_len == before.prompt_len


def test_trl_kto_keeps_labels_and_the_prompt_split(openai_file, tmp_path):
    trajectories = list(read_trajectories(openai_file, "openai", MAPPING))
    path = tmp_path / "kto.jsonl"
    write_trajectories(path, trajectories, "trl-kto")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["label"] for row in rows] == [True, False, True, True, False]
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert rows[0]["completion"][0]["tool_calls"][0]["function"]["arguments"] == {"expression": "3 * 4 + 1"}
    back = list(read_trajectories(path, "trl-kto"))
    assert [t.messages for t in back] == [t.messages for t in trajectories]
    assert [t.label for t in back] == [t.label for t in trajectories]


def test_trl_dpo_pairs_successes_with_failures_of_the_same_task(openai_file, tmp_path):
    trajectories = list(read_trajectories(openai_file, "openai", MAPPING))
    path = tmp_path / "dpo.jsonl"
    assert write_trajectories(path, trajectories, "trl-dpo") == 3  # a: 2 successes x 1 failure; b: 1 x 1
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["chosen_id"], r["rejected_id"]) for r in rows] == [("a#0", "a#1"), ("a#2", "a#1"), ("b#0", "b#1")]
    # the sides share the call (same arguments) and diverge at its result: the prompt ends before the call
    # because the tool results differ, so each side starts with the assistant's call
    assert [m["role"] for m in rows[0]["prompt"]] == ["system", "user"]
    assert rows[0]["chosen"][-1]["content"] == "The answer is 13." and rows[0]["rejected"][-1]["content"] == "The answer is 12."
    assert rows[0]["tools"] == [SCHEMA]
    assert write_trajectories(tmp_path / "one.jsonl", trajectories, "trl-dpo", per_task=1) == 2
    back = list(read_trajectories(path, "trl-dpo"))
    assert [(t.id, t.label) for t in back[:2]] == [("a#0", "positive"), ("a#1", "negative")]
    assert back[0].messages == trajectories[0].messages and back[1].messages == trajectories[1].messages


def test_sharegpt_records_look_like_llama_factory_data(openai_file, tmp_path):
    trajectories = list(read_trajectories(openai_file, "openai", MAPPING))
    path = tmp_path / "sharegpt.json"
    write_trajectories(path, trajectories[:1], "sharegpt")
    [row] = json.loads(path.read_text())
    assert row["system"] == "Solve the problem with the calculator."
    assert [turn["from"] for turn in row["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(row["conversations"][1]["value"]) == {"name": "calculate", "arguments": {"expression": "3 * 4 + 1"}}
    assert json.loads(row["tools"]) == [SCHEMA["function"]]
    with_text = trajectories[0].model_copy(update={"messages": [
        *trajectories[0].messages[:2], trajectories[0].messages[2].model_copy(update={"content": "Let me compute."}),
        *trajectories[0].messages[3:]]})
    with pytest.raises(DataError, match=r"message 2: sharegpt cannot hold text beside a tool call"):
        write_trajectories(path, [with_text], "sharegpt")


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json"])
def test_files_that_datasets_reads_round_trip(openai_file, tmp_path, suffix):
    trajectories = list(read_trajectories(openai_file, "openai", MAPPING))
    path = tmp_path / f"logs{suffix}"
    write_trajectories(path, trajectories, "openai", MAPPING)
    back = list(read_trajectories(path, "openai", MAPPING))
    assert [t.messages for t in back] == [t.messages for t in trajectories]
    assert [t.verdict.score for t in back] == [t.verdict.score for t in trajectories]


def _break(record: dict, change) -> dict:
    change(record["conversation"])
    return record


@pytest.mark.parametrize("change, message", [
    (lambda m: m[2]["tool_calls"][0]["function"].update(arguments="{expression: 3 * 4"),
     "message 2: the arguments of the call to 'calculate' are not JSON"),
    (lambda m: m[3].update(tool_call_id="call_zz"),
     "message 3: a tool message with no matching call: no earlier assistant message called 'call_zz'"),
    (lambda m: m.pop(2), "message 2: a tool message with no matching call"),
    (lambda m: m[1].update(role="human"), "message 1: unknown role 'human'"),
    (lambda m: m[4].update(audio={"id": "x"}), "message 4: unsupported message key 'audio'"),
])
def test_malformed_records_are_located_errors(tmp_path, change, message):
    path = tmp_path / "bad.jsonl"
    records = [openai_record("a", 0, "13", 1.0), _break(openai_record("a", 1, "12", 0.0), change)]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    with pytest.raises(DataError) as info:
        list(read_trajectories(path, "openai", MAPPING))
    assert str(info.value).startswith(f"{path}:2: {message}")


def test_a_missing_messages_field_names_the_flag(openai_file):
    with pytest.raises(DataError, match=r"logs.jsonl:1: no field 'messages' \(fields: task_id, reward, model, "
                                        r"tools, conversation\); set --messages-field"):
        list(read_trajectories(openai_file, "openai"))


def test_labels_and_tools_files(tmp_path):
    rows = [{"id": "x", "outcome": "success", "messages": [{"role": "user", "content": "q"},
                                                           {"role": "assistant", "content": "a"}]},
            {"id": "y", "outcome": "failure", "messages": [{"role": "user", "content": "q"}]},
            {"id": "z", "outcome": "maybe", "messages": []}]
    path = tmp_path / "labelled.json"
    path.write_text(json.dumps(rows))
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([SCHEMA["function"]]))
    fields = FieldMap(label_field="outcome", tools=tools)
    reader = read_trajectories(path, "openai", fields)
    x, y = next(reader), next(reader)
    assert (x.label, x.verdict.score, x.tools) == ("positive", 1.0, [SCHEMA])
    assert (y.label, y.prompt_len) == ("negative", 1)
    with pytest.raises(DataError, match=r"labelled.json:3: field 'outcome' is not a label"):
        next(reader)


def test_text_react_trajectories_stay_lossless_through_openai(tmp_path):
    prompt = [Message(role="user", content="Solve ..."), Message(role="assistant", content="OK.", train=False),
              Message(role="user", content="Question: 2+2")]
    trajectory = Trajectory(id="t#0", task_id="t", prompt_len=3, verdict=Verdict(correct=True, score=1.0),
                            messages=[*prompt, Message(role="assistant", content="Action: finish[4]", weight=0.5)])
    path = tmp_path / "react.jsonl"
    write_trajectories(path, [trajectory], "openai")
    row = json.loads(path.read_text())
    assert row["prompt_len"] == 3 and row["messages"][1]["train"] is False and row["messages"][3]["weight"] == 0.5
    [back] = read_trajectories(path, "openai")
    assert back.messages == trajectory.messages and back.prompt_len == 3


def test_convert_command_and_push_to_hub_without_a_token(openai_file, tmp_path, monkeypatch):
    runner = CliRunner()
    cli = Cli()
    convert.register_commands(cli)
    out = tmp_path / "sft.jsonl"
    result = runner.invoke(cli, ["convert", str(openai_file), str(out), "--from", "openai", "--to", "trl-sft",
                                 "--messages-field", "conversation"])
    assert result.exit_code == 0, result.output
    assert "5 trajectories (3 positive, 2 negative, 0 unlabelled) -> 5 trl-sft records" in result.output
    assert json.loads(out.read_text().splitlines()[0])["conversation"][2]["tool_calls"][0]["function"]["arguments"] == \
        {"expression": "3 * 4 + 1"}
    result = runner.invoke(cli, ["convert", str(openai_file), str(out), "--from", "openai", "--to", "openai"])
    assert result.exit_code == 2 and "logs.jsonl:1: no field 'messages'" in result.output
    result = runner.invoke(cli, ["convert", str(openai_file), str(out), "--from", "openai", "--to", "openai",
                                 "--margin", "0.5"])
    assert result.exit_code == 2 and "apply only to --to trl-dpo" in result.output
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(cli, ["convert", str(openai_file), str(out), "--from", "openai", "--to", "trl-dpo",
                                 "--messages-field", "conversation", "--push-to-hub", "me/trajectories"])
    assert result.exit_code == 2
    assert "--push-to-hub me/trajectories needs a Hugging Face token" in result.output
    assert out.is_file()  # the local file is written first


def test_the_trajectories_source_reads_every_format(openai_file):
    assert set(typing.get_args(FormatName)) == set(FORMATS)
    source = Plugins(entry_points=False).create("source", "trajectories", {"path": str(openai_file), "format": "openai",
                                                             "messages_field": "conversation"})
    assert isinstance(source, TrajectoryFile)
    assert [t.label for t in source.trajectories(None)].count("positive") == 3


def test_tool_call_ids_are_numbered_and_results_matched_in_order(tmp_path):
    """TRL-style records often carry no ids: calls get call_<n>, results answer the oldest open call."""
    record = {"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}},
                                             {"type": "function", "function": {"name": "g", "arguments": {}}}]},
        {"role": "tool", "name": "f", "content": "1"}, {"role": "tool", "name": "g", "content": "2"}]}
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps(record) + "\n")
    [trajectory] = read_trajectories(path, "trl-sft")
    assert [c.id for c in trajectory.messages[1].tool_calls] == ["call_0", "call_1"]
    assert [m.tool_call_id for m in trajectory.messages[2:]] == ["call_0", "call_1"]
    assert trajectory.messages[1].tool_calls[0] == ToolCall(id="call_0", name="f", arguments={"x": 1})
