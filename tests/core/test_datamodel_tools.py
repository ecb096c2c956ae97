"""Native tool calls in the data model: messages with calls, tool results, tool schemas, version-1 files."""

import json

import pytest
from pydantic import ValidationError

from misstep import (
    SCHEMA_VERSION,
    DataError,
    Example,
    Message,
    PreferenceExample,
    ToolCall,
    Trajectory,
    read_jsonl,
    write_jsonl,
)

CALCULATE = {"type": "function", "function": {"name": "calculate", "description": "Evaluate arithmetic.",
                                              "parameters": {"type": "object",
                                                             "properties": {"expression": {"type": "string"}},
                                                             "required": ["expression"]}}}


def calling_messages() -> list[Message]:
    return [
        Message(role="system", content="Use the tools."),
        Message(role="user", content="What is 3 * 4 + 5 * 6?"),
        Message(role="assistant", content=None, tool_calls=[  # type: ignore[arg-type]
            ToolCall(id="call_a", name="calculate", arguments={"expression": "3 * 4"}),
            ToolCall(id="call_b", name="calculate", arguments={"expression": "5 * 6"}),
        ]),
        Message(role="tool", content="12", tool_call_id="call_a", name="calculate"),
        Message(role="tool", content="30", tool_call_id="call_b", name="calculate"),
        Message(role="assistant", content="42"),
    ]


def test_a_tool_calling_trajectory_round_trips_through_jsonl(tmp_path):
    trajectory = Trajectory(id="t#0", task_id="t", messages=calling_messages(), prompt_len=2, tools=[CALCULATE])
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [trajectory])
    [back] = read_jsonl(path, Trajectory)
    assert back == trajectory
    assert back.messages[2].content == "" and [c.id for c in back.messages[2].tool_calls] == ["call_a", "call_b"]
    assert back.messages[3].tool_call_id == "call_a" and back.messages[3].name == "calculate"
    assert back.tools == [CALCULATE]


def test_text_messages_are_written_without_tool_fields():
    line = json.loads(Message(role="user", content="hi").model_dump_json())
    assert set(line) == {"role", "content", "train", "weight", "spans"}
    call = json.loads(calling_messages()[2].model_dump_json())
    assert call["tool_calls"][0] == {"id": "call_a", "name": "calculate", "arguments": {"expression": "3 * 4"}}


def test_version_1_files_keep_loading(tmp_path):
    """Lines exactly as misstep wrote them before tool calls existed (schema_version 1)."""
    v1 = ('{"schema_version":1,"id":"t1#t0-s0","task_id":"t1","messages":[{"role":"user","content":"Question: 2+2",'
          '"train":null,"weight":1.0,"spans":[]},{"role":"assistant","content":"Action: finish[4]","train":null,'
          '"weight":1.0,"spans":[]}],"prompt_len":1,"verdict":{"correct":true,"score":1.0,"prediction":"4",'
          '"feedback":null,"first_wrong_step":null,"metrics":{}},"provenance":{"source":"collect","model":"tiny",'
          '"temperature":0.0,"sample":0,"created":"2026-11-01T10:00:00Z"},"metadata":{"turns":1}}\n')
    path = tmp_path / "v1.jsonl"
    path.write_text(v1)
    [trajectory] = read_jsonl(path, Trajectory)
    assert trajectory.schema_version == SCHEMA_VERSION == 2
    assert [m.content for m in trajectory.messages] == ["Question: 2+2", "Action: finish[4]"]
    assert trajectory.tools == [] and not trajectory.messages[1].tool_calls and trajectory.label == "positive"
    rewritten = json.loads(trajectory.model_dump_json())
    original = json.loads(v1)
    assert rewritten["messages"] == original["messages"]  # text-only messages are written as before
    assert {k: v for k, v in rewritten.items() if k not in {"schema_version", "tools"}} == \
        {k: v for k, v in original.items() if k != "schema_version"}


def test_a_tool_result_without_its_call_is_a_located_error(tmp_path):
    messages = calling_messages()
    del messages[2]
    with pytest.raises(ValidationError, match="message 2: the tool message answers the call id 'call_a'"):
        Trajectory(id="t", task_id="t", messages=messages)
    path = tmp_path / "bad.jsonl"
    row = Trajectory(id="t", task_id="t", messages=calling_messages()).model_dump(mode="json")
    del row["messages"][2]
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: .*message 2: the tool message answers"):
        list(read_jsonl(path, Trajectory))


@pytest.mark.parametrize("bad, match", [
    ({"role": "user", "content": "x", "tool_calls": [{"id": "c", "name": "f"}]}, "only assistant messages"),
    ({"role": "assistant", "content": "x", "tool_call_id": "c"}, "only tool messages"),
    ({"role": "robot", "content": "x"}, "role"),
    ({"role": "assistant", "tool_calls": [{"id": "c", "name": "f", "arguments": "not json"}]}, "arguments"),
])
def test_malformed_messages_are_refused(bad, match):
    with pytest.raises(ValidationError, match=match):
        Message.model_validate(bad)


def test_duplicate_call_ids_are_refused():
    call = ToolCall(id="same", name="calculate")
    with pytest.raises(ValidationError, match="two tool calls have the id 'same'"):
        Example(id="e", messages=[Message(role="assistant", tool_calls=[call, call])])


def test_preference_example_sides_are_checked_with_the_prompt():
    messages = calling_messages()
    pair = PreferenceExample(id="p", prompt=messages[:3], chosen=messages[3:], rejected=[messages[3], messages[5]],
                             tools=[CALCULATE])
    assert PreferenceExample.model_validate_json(pair.model_dump_json()) == pair
    with pytest.raises(ValidationError, match="rejected"):
        PreferenceExample(id="p", prompt=messages[:3], chosen=messages[3:], rejected=[])
    with pytest.raises(ValidationError, match="call id 'call_a'"):
        PreferenceExample(id="p", prompt=messages[:2], chosen=messages[2:], rejected=messages[3:])
