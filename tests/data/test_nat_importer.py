"""The `nat-trajectories` source: NAT's released trajectory files as misstep Trajectory records."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import misstep
import pytest
import yaml
from misstep_nat.importer import NatTrajectories
from shared_data import SHARED_DATA

SHARED = SHARED_DATA / "strategyqa"


def item(qid: str, source: str, reward: bool, pred: str | None, turns: list[tuple[str, str]]) -> dict:
    info = {"reward": reward, "gt": True, **({"acc": reward, "pred": pred} if pred is not None else {})}
    return {"id": qid, "source": source, "info": info,
            "conversations": [{"role": role, "content": text, "loss": role == "assistant"} for role, text in turns]}


SEARCH = [("assistant", "Thought: look it up.\n\nAction: search[Genghis Khan descendants]"),
          ("user", "Observation:  #1: Many. #2: More. #3: Most.")]
POSITIVE = [item("q1", "0.5", True, "Yes", [*SEARCH, ("assistant", "Action: finish[Yes]"),
                                            ("user", "Observation: Episode finished")])]
NEGATIVE = [item("q1", "0.2", False, "No", [*SEARCH, ("assistant", "Action: finish[No]"),
                                            ("user", "Observation: Episode finished")]),
            item("q1", "0.2", False, None, SEARCH),  # a second one at the same temperature, no finish
            item("q2", "0.7", False, None, [])]


@pytest.fixture
def nat_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    positive, negative, questions = tmp_path / "pos.json", tmp_path / "neg.json", tmp_path / "train.jsonl"
    positive.write_text(json.dumps(POSITIVE))
    negative.write_text(json.dumps(NEGATIVE))
    questions.write_text(json.dumps({"id": "q1", "question": "Are more people related to Genghis Khan?",
                                     "answer": True}) + "\n" + json.dumps({"id": "q2", "question": "Q2?",
                                                                           "answer": False}) + "\n")
    return positive, negative, questions


def source(paths: list[Path], questions: Path | None = None) -> NatTrajectories:
    tasks = misstep.TaskRef(use="strategyqa", path=str(questions)).resolve(misstep.get_plugins()) if questions else None
    return NatTrajectories(NatTrajectories.Options(paths=paths, tasks=tasks))


def test_import_with_questions(nat_files) -> None:
    positive, negative, questions = nat_files
    trajectories = list(source([positive, negative], questions).trajectories())
    assert [t.id for t in trajectories] == ["strategyqa-q1#t0.5-s0", "strategyqa-q1#t0.2-s0", "strategyqa-q1#t0.2-s1",
                                           "strategyqa-q2#t0.7-s0"]
    assert [t.label for t in trajectories] == ["positive", "negative", "negative", "negative"]
    first = trajectories[0]
    assert first.prompt_len == 3
    assert first.messages[0].content == misstep.PromptTemplate(preset="strategyqa").instruction_text
    assert first.messages[2].content == "Question: Are more people related to Genghis Khan?"
    assert [(m.role, m.trained) for m in first.messages[3:]] == [
        ("assistant", True), ("user", False), ("assistant", True), ("user", False)]
    assert first.messages[3].content.endswith("Action: search[Genghis Khan descendants]")
    assert first.verdict == misstep.Verdict(correct=True, score=1.0, prediction="Yes")
    assert (first.provenance.source, first.provenance.model, first.provenance.temperature) == (
        "nat-trajectories", "gpt-3.5-turbo", 0.5)
    assert first.metadata == {"dataset": "strategyqa", "file": "pos.json", "gold": True, "turns": 2}
    assert trajectories[2].verdict.prediction is None and trajectories[3].messages[3:] == []


def test_import_without_questions_keeps_only_the_turns(nat_files) -> None:
    positive, _, _ = nat_files
    [trajectory] = source([positive]).trajectories()
    assert trajectory.prompt_len == 0 and trajectory.messages[0].role == "assistant"


def test_bad_files_are_data_errors(tmp_path: Path, nat_files) -> None:
    positive, _, questions = nat_files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([POSITIVE[0], {**POSITIVE[0], "info": {"pred": "Yes"}}]))
    with pytest.raises(misstep.DataError, match=r"bad.json: item 1: info.reward: Field required"):
        list(source([bad]).trajectories())
    bad.write_text('{"id": 1}')
    with pytest.raises(misstep.DataError, match="expected a JSON list"):
        list(source([bad]).trajectories())
    questions.write_text(json.dumps({"id": "other", "question": "?", "answer": True}) + "\n")
    with pytest.raises(misstep.DataError, match=r"pos.json: item 0: no task 'strategyqa-q1'"):
        list(source([positive], questions).trajectories())


def test_reformat_stage_reads_the_source(nat_files, tmp_path: Path) -> None:
    positive, negative, questions = nat_files
    recipe = misstep.recipe.validate_recipe(yaml.safe_load(textwrap.dedent(f"""
        name: import
        stages:
          - use: reformat
            source:
              use: nat-trajectories
              paths: [{positive}, {negative}]
              tasks: {{use: strategyqa, path: {questions}}}
            reformatter: {{use: nut}}
        """)), plugins=misstep.get_plugins())
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    examples = list(misstep.read_jsonl(run.dir / run.outputs["reformat"]["examples"]["path"], misstep.Example))
    assert sorted(e.id for e in examples) == ["strategyqa-q1#t0.2-s0", "strategyqa-q1#t0.2-s1", "strategyqa-q1#t0.5-s0"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared reference data is absent")
def test_released_strategyqa_trajectories() -> None:
    files = [SHARED / "strategyqa_gpt-3.5_positive.json", SHARED / "strategyqa_gpt-3.5_negative.json"]
    trajectories = list(source(files, SHARED / "train.jsonl").trajectories())
    assert Counter(t.label for t in trajectories) == {"positive": 1070, "negative": 1263}
    assert len({t.id for t in trajectories}) == 2333
    assert Counter(t.provenance.temperature for t in trajectories) == {0.2: 769, 0.5: 778, 0.7: 786}
    assert all(t.prompt_len == 3 and t.messages[2].content.startswith("Question: ") for t in trajectories)
    verifier = misstep.get_plugins().create("verifier", "yes-no")
    tasks = {t.id: t for t in misstep.get_plugins().create("task", "strategyqa",
                                                         {"path": str(SHARED / "train.jsonl")}).load()}
    assert all(verifier.verify(tasks[t.task_id], t.verdict.prediction).correct == t.verdict.correct
               for t in trajectories)
