"""The quickstart end to end on CPU (student, three trainings, evaluations, comparison), the student stage,
``misstep quickstart`` and ``misstep sweep``."""

import csv
import json

import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

import misstep
from misstep.cli import cli
from misstep.testing import build_tiny_model
from misstep_nat.hints import MATH_POSITIVE

COLLECT = """\
name: student-test
stages:
  - use: collect
    tasks: [{use: arithmetic-word-problems, count: 40}]
    backend: {use: scripted-teacher}
    tools: [calculate]
    verifier: numeric
  - {use: student, corpus: collect, hidden_size: 32, layers: 1, heads: 2, vocab_size: 600}
"""


def run(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return misstep.run_recipe(misstep.load_recipe(path, plugins=misstep.get_plugins()), run_dir=tmp_path / "run", quiet=True)


def test_student_tokenizer_is_trained_on_the_task_text(tmp_path):
    result = run(tmp_path, COLLECT)
    outputs = result.outputs["student"]
    folder = result.dir / outputs["model"]["path"]
    assert outputs["built"] is True and 10_000 < outputs["parameters"] < 100_000
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for text in (" calculate", "Observation", " marbles", " correctly", " incorrectly"):
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == 1, text
    assert any(str(number) in tokenizer.get_vocab() for number in range(10, 100))  # numbers are not split in digits
    # the model loads like any other and the chat template renders the agent's conversation
    prompt = misstep.PromptTemplate().render("Ben has 5 apples.")
    rendered = tokenizer.apply_chat_template([m.model_dump(include={"role", "content"}) for m in prompt],
                                             tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")
    again = run(tmp_path, COLLECT)  # finished: skipped, same model
    assert again.outputs["student"] == outputs


def test_student_hands_on_an_existing_model(tmp_path):
    existing = build_tiny_model(tmp_path / "existing")
    result = run(tmp_path, f"name: s\nstages:\n  - {{use: student, model: {existing}}}\n")
    assert result.outputs["student"] == {"model": {"path": str(existing)}, "built": False}


def test_student_size_must_split_into_heads(tmp_path):
    with pytest.raises(misstep.ComponentError, match="hidden_size 30 is not divisible by heads 4"):
        run(tmp_path, "name: s\nstages:\n  - {use: student, hidden_size: 30, heads: 4}\n")


# The quickstart with less of everything (the real one: `misstep quickstart`, about 2.5 minutes on 2 cores):
# fewer problems, more positives for NAT (it learns sooner), Vanilla and NUT only briefly trained. NAT gets
# 400 steps at 6e-3: at 300 the student sometimes has the format but not yet the copy of the observation
# into finish[...] (seeds 0-3: 2%, 67%, 0%, 48%); at 400, seeds 0-4 gave 50%, 63%, 65%, 52%, 35%.
SMALL = [
    "stages.collect.tasks.0.count=400",
    "stages.eval-untrained.tasks.0.count=60",  # the four evaluations share this test set (YAML anchor)
    "stages.reformat-nat.reformatter.pos_num=300", "stages.reformat-nat.reformatter.neg_num=300",
    "stages.train-nat.max_steps=400", "stages.train-nat.learning_rate=6e-3",
    "stages.train-vanilla.max_steps=30", "stages.train-nut.max_steps=30",
]


@pytest.mark.slow
def test_quickstart_trains_students_that_beat_the_untrained_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    misstep.get_plugins().register_commands(cli)  # what the `misstep` entry point does
    result = CliRunner().invoke(cli, ["quickstart", "--run-dir", "qs", "-q", *(f"--set={s}" for s in SMALL)])
    assert result.exit_code == 0, result.output
    assert "| method | tasks | accuracy | vs baseline (points) |" in result.output
    folder = tmp_path / "qs" / "compare"
    assert (folder / "accuracy.png").stat().st_size > 10_000
    rows = {row["method"]: row for row in csv.DictReader((folder / "comparison.csv").open())}
    assert list(rows) == ["untrained", "vanilla", "nut", "nat"]
    untrained, nat = rows["untrained"], rows["nat"]
    assert float(untrained["action_error_rate"]) > 0.9  # before: no usable action at all
    assert float(nat["action_error_rate"]) < 0.1  # after: the ReAct format is learnt
    assert float(nat["accuracy"]) > float(untrained["accuracy"]) + 0.2
    assert int(nat["examples"]) == 600 and int(rows["vanilla"]["examples"]) == 150
    # the NAT student was asked with the positive hint, the others without
    metrics = json.loads((tmp_path / "qs" / "eval-nat" / "metrics.json").read_text())
    assert metrics["inference_prompt"] == "nat"
    first = json.loads((tmp_path / "qs" / "eval-nat" / "trajectories.jsonl").open().readline())
    assert first["messages"][2]["content"].endswith(". " + MATH_POSITIVE)
    plain = json.loads((tmp_path / "qs" / "eval-nut" / "trajectories.jsonl").open().readline())
    assert plain["messages"][2]["content"].endswith("?")


def test_sweep_over_negatives_writes_csv_and_plot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    misstep.get_plugins().register_commands(cli)
    tiny = ["stages.collect.tasks.0.count=40", "stages.eval-untrained.tasks.0.count=5",
            "stages.student.hidden_size=32", "stages.student.vocab_size=500",
            *(f"stages.train-{m}.max_steps=2" for m in ("vanilla", "nut", "nat"))]
    args = ["sweep", "--neg-num", "0,20", "--methods", "nat", "-q", *(f"--set={s}" for s in tiny)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "quickstart-sweep"
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    assert [(r["method"], r["neg_num"], r["stage"]) for r in rows] == [
        ("untrained", "", "eval-untrained"), ("vanilla", "", "eval-vanilla"), ("nat", "0", "eval-nat-neg0"),
        ("nat", "20", "eval-nat-neg20")]
    assert [r["negatives"] for r in rows] == ["", "0", "0", "20"] and {r["count"] for r in rows} == {"5"}
    assert "| untrained |  |  |  | 1 | 0.00% | 100.00% |" in result.output  # the student before training
    assert (folder / "sweep.png").stat().st_size > 10_000 and "| nat | 20 |" in result.output
    assert json.loads((folder / "train-nat-neg20" / "model" / "misstep.json").read_text())["reformatter"]["neg_num"] == 20


def test_sweep_over_seeds_reports_mean_and_spread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    misstep.get_plugins().register_commands(cli)
    tiny = ["stages.collect.tasks.0.count=40", "stages.eval-untrained.tasks.0.count=5",
            "stages.student.hidden_size=32", "stages.student.vocab_size=500",
            *(f"stages.train-{m}.max_steps=2" for m in ("vanilla", "nut", "nat"))]
    result = CliRunner().invoke(cli, ["sweep", "--seeds", "0,1", "-q", *(f"--set={s}" for s in tiny)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "quickstart-sweep"
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    assert [(r["method"], r["seed"], r["stage"]) for r in rows] == [("untrained", "", "eval-untrained")] + [
        (m, str(s), f"eval-{m}" + ("-s1" if s else "")) for m in ("vanilla", "nut", "nat") for s in (0, 1)]
    nat = next(line for line in result.output.splitlines() if line.startswith("| nat | 600 |"))
    cells = nat.split(" | ")
    assert cells[4] == "2" and " ± " in cells[5]  # one line per method: 2 runs, accuracy mean ± sd
    assert json.loads((folder / "train-nat-s1" / "model" / "misstep.json").read_text())["stage"] == "train-nat-s1"
    comparison = json.loads((folder / "compare" / "comparison.json").read_text())
    assert [row["method"] for row in comparison["rows"]] == ["untrained", "vanilla", "nut", "nat"]
    assert [len(row["runs"]) for row in comparison["rows"]] == [0, 2, 2, 2] and len(comparison["runs"]) == 7
    assert (folder / "sweep.png").stat().st_size > 10_000
