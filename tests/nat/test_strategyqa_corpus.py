"""`misstep strategyqa-corpus`: training facts and test explanations (answer removed) as search passages."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

import misstep
from misstep_nat.corpus import register, without_verdict


def invoke(*args: str) -> object:
    group = click.Group()
    register(group)
    return CliRunner().invoke(group, list(args))


def test_the_leading_verdict_is_removed() -> None:
    assert without_verdict("Yes. Igor is a Death Eater.") == "Igor is a Death Eater."
    assert without_verdict("no, because ice floats") == "because ice floats"
    assert without_verdict("Nothing to remove.") == "Nothing to remove."  # "No" only as a whole word


def test_corpus_command_writes_passages_the_search_tool_reads(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(json.dumps(
        {"term": "Genghis Khan", "question": "?", "answer": True,
         "facts": ["Genghis Khan had  sixteen children.", "Caesar had three."]}) + "\n")
    (tmp_path / "test_random_500.jsonl").write_text(json.dumps(
        {"id": 1, "question": "?", "answer": False, "explanation": "No. Taco Bell serves tacos."}) + "\n")
    out = tmp_path / "passages.jsonl"
    result = invoke("strategyqa-corpus", str(tmp_path), str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"title": "Genghis Khan", "text": "Genghis Khan had sixteen children. Caesar had three."},
                    {"title": "", "text": "Taco Bell serves tacos."}]
    search = misstep.Plugins().create("tool", "search", {"corpus": str(out)})
    assert "Taco Bell serves tacos." in search.run("Taco Bell")


def test_a_file_without_facts_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(json.dumps({"question": "?", "facts": "not a list"}) + "\n")
    (tmp_path / "test_random_500.jsonl").write_text("")
    result = invoke("strategyqa-corpus", str(tmp_path), str(tmp_path / "out.jsonl"))
    assert isinstance(result.exception, misstep.DataError)  # the `misstep` command prints it without a traceback
    assert "train.jsonl:1" in str(result.exception) and "facts" in str(result.exception)
