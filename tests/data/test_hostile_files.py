"""Hostile data files: every reader of a user's text file (tasks, trajectories, NAT and TriPosT files,
annotations, vocabularies, configs) reports a non-UTF-8 byte at its file and line, refuses an empty input
unless the recipe allows it, and refuses impossible values (NaN answers, schema 0, prompt past the messages)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import misstep
import pytest
from misstep.builtin.train import _deepspeed_config

LATIN1 = '{"question": "caf\xe9?", "answer": 1}'.encode("latin-1")  # byte 0xe9 at column 15
TRAJECTORY = misstep.Trajectory(id="t#0", task_id="t", messages=[misstep.Message(role="user", content="q?")],
                                prompt_len=1)
NAT_ITEM = {"id": "q1", "source": "0.5", "info": {"reward": True, "pred": "Yes", "gt": True},
            "conversations": [{"role": "assistant", "content": "Action: finish[Yes]", "loss": True}]}
TRIPOST_ROW = {"question": "Q: (1 + 2) = ", "rationale": "(Final response) So the answer is 3.",
               "correct_answer": "3", "meta_data": {"new_split": "train", "length": 2, "depth_levels": []}}


def create(kind: str, name: str, **options: Any) -> Any:
    return misstep.get_plugins().create(kind, name, {key: str(v) if isinstance(v, Path) else v
                                                     for key, v in options.items()})


def tasks(name: str) -> Callable[..., list[Any]]:
    return lambda path, **options: list(create("task", name, path=path, **options).load())


def trajectories(name: str, key: str = "path") -> Callable[..., list[Any]]:
    def read(path: Path, **options: Any) -> list[Any]:
        return list(create("source", name, **{key: [path] if key == "paths" else path}, **options).trajectories(None))

    return read


def calls(path: Path) -> list[str]:
    backend = create("backend", "gsm8k-calls", path=path)
    return backend.generate([[misstep.Message(role="user", content="q?")]], [misstep.Sampling()])


def vocabulary(path: Path) -> list[Any]:
    return list(create("task", "tripost-word-sorting", vocabulary=path, count=1, words=[2]).load())


def corpus(path: Path) -> Any:
    return create("tool", "search", corpus=path, cache=False)


def model_info(path: Path) -> Any:
    return misstep.trained_spec(path.parent)


def deepspeed(path: Path) -> Any:
    return _deepspeed_config(str(path), path.parent)


def lines(*rows: Any) -> bytes:
    """JSON Lines: a good row, a blank line, then the Latin-1 row on line 3."""
    return b"".join(json.dumps(row).encode() + b"\n" if not isinstance(row, bytes) else row + b"\n" for row in rows)


def json_list(good: Any) -> bytes:
    """A JSON list spread over lines, the Latin-1 row on line 3."""
    return b"[\n" + json.dumps(good).encode() + b",\n" + LATIN1 + b"\n]\n"


# reader name -> (file name, file content with a Latin-1 byte on line 3, how to read it)
NOT_UTF8: dict[str, tuple[str, bytes, Callable[[Path], Any]]] = {
    "jsonl tasks": ("q.jsonl", lines({"question": "1?"}, b"", LATIN1), tasks("jsonl")),
    "gsm8k": ("train.jsonl", lines({"question": "q", "answer": "#### 1"}, b"", LATIN1), tasks("gsm8k")),
    "hotpotqa (JSON list)": ("dev.json", json_list({"question": "Who?", "answer": "x", "id": 1}), tasks("hotpotqa")),
    "trajectory file": ("t.jsonl", lines(json.loads(TRAJECTORY.model_dump_json()), b"", LATIN1),
                        trajectories("trajectories")),
    "NAT trajectories": ("pos.json", json_list(NAT_ITEM), trajectories("nat-trajectories", "paths")),
    "TriPosT file": ("multistep_arithmetic_x.jsonl", lines(TRIPOST_ROW, b"", LATIN1), tasks("tripost-file")),
    "TriPosT vocabulary": ("words.txt", b"apple\nbanana\ncaf\xe9\n", vocabulary),
    "search corpus": ("passages.jsonl", lines({"text": "Paris is in France."}, b"", LATIN1), corpus),
    "TRICE annotations": ("gsm8k.jsonl", lines({"question": "q?", "answer": "1 #### 1"}, b"", LATIN1), calls),
    "model description": ("misstep.json", b'{\n  "base": "tiny",\n  "caf\xe9": 1\n}\n', model_info),
    "DeepSpeed config": ("ds.json", b'{\n  "zero_optimization": {},\n  "caf\xe9": 1\n}\n', deepspeed),
}


@pytest.mark.parametrize("reader", NOT_UTF8)
def test_a_non_utf8_byte_is_an_error_at_its_file_and_line(tmp_path: Path, reader: str) -> None:
    name, content, read = NOT_UTF8[reader]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(misstep.DataError) as error:
        read(path)
    assert (error.value.path, error.value.line) == (str(path), 3)
    assert "not UTF-8 text: byte 0xe9 at column" in str(error.value) and "save the file as UTF-8" in str(error.value)


def test_the_shared_readers_locate_bad_bytes_and_accept_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"b": "\xff"}\n')
    assert next(misstep.text_lines(path)) == (1, '{"a": 1}\n')
    for read in (lambda: list(misstep.text_lines(path)), lambda: misstep.read_text(path),
                 lambda: list(misstep.iter_json_rows(path))):
        with pytest.raises(misstep.DataError, match=r"x.jsonl:2: not UTF-8 text: byte 0xff at column 8"):
            read()
    path.write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert list(misstep.iter_json_rows(path)) == [(1, {"a": 1})]
    assert misstep.read_json(path) == [{"a": 1}]


def test_unreadable_and_deeply_nested_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(misstep.DataError, match=r"cannot read the file"):
        misstep.read_text(tmp_path)  # a folder
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"a": 1}\n' + "[" * 100_000 + "\n")
    with pytest.raises(misstep.DataError, match=r"deep.jsonl:2: JSON nested too deeply"):
        list(misstep.iter_json_rows(deep))


# reader name -> (file name, an empty file's content, how to read it with options)
EMPTY: dict[str, tuple[str, str, Callable[..., list[Any]]]] = {
    "jsonl tasks": ("q.jsonl", "", tasks("jsonl")),
    "gsm8k": ("train.jsonl", "\n\n", tasks("gsm8k")),
    "hotpotqa (JSON list)": ("dev.json", "[]", tasks("hotpotqa")),
    "trajectory file": ("t.jsonl", "", trajectories("trajectories")),
    "NAT trajectories": ("pos.json", " []\n", trajectories("nat-trajectories", "paths")),
    "TriPosT file": ("multistep_arithmetic_x.jsonl", "", tasks("tripost-file")),
}


@pytest.mark.parametrize("reader", EMPTY)
def test_an_empty_input_is_an_error_unless_allowed(tmp_path: Path, reader: str) -> None:
    name, content, read = EMPTY[reader]
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(misstep.DataError, match=r"holds no (records|trajectories).*set `allow_empty: true`") as error:
        read(path)
    assert error.value.path == str(path)
    assert read(path, allow_empty=True) == []


def test_nan_and_infinite_answers_are_refused_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    for bad in ("NaN", "Infinity", "-Infinity"):
        path.write_text(f'{{"question": "1?", "answer": 1}}\n{{"question": "2?", "answer": {bad}}}\n')
        with pytest.raises(misstep.DataError, match=r"q.jsonl:2: not a valid Task: answer: .*give a finite number"):
            tasks("jsonl")(path)
    path.write_text('{"id": "a", "question": "q", "answer": NaN}\n')
    with pytest.raises(misstep.DataError, match=r"q.jsonl:1: not a valid Task: answer"):
        list(misstep.read_jsonl(path, misstep.Task))


@pytest.mark.parametrize("version", [0, -1])
def test_schema_versions_below_one_are_refused(tmp_path: Path, version: int) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({**json.loads(TRAJECTORY.model_dump_json()), "schema_version": version}) + "\n")
    with pytest.raises(misstep.DataError, match=rf"t.jsonl:1: .*schema_version {version} is not a misstep schema"):
        list(misstep.read_jsonl(path, misstep.Trajectory))


def test_a_prompt_past_the_messages_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = json.loads(TRAJECTORY.model_dump_json())
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "prompt_len": 2}) + "\n")
    with pytest.raises(misstep.DataError, match=r"t.jsonl:2: not a valid Trajectory: .*prompt_len 2 is past the 1 "):
        list(misstep.read_jsonl(path, misstep.Trajectory))


@pytest.mark.slow
def test_the_cli_reports_bad_and_empty_inputs_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "q.jsonl"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: hostile\nstages:\n  - use: tasks\n    tasks: {{use: jsonl, path: {data}}}\n")
    for content, expected in ((lines({"question": "1?"}, b"", LATIN1), f"{data}:3: not UTF-8 text"),
                              (b"", f"{data}: the file holds no records")):
        data.write_bytes(content)
        result = subprocess.run([sys.executable, "-m", "misstep", "run", str(recipe), "--run-dir",
                                 str(tmp_path / "run"), "--quiet"], capture_output=True, text=True)
        assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
