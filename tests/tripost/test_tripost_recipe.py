"""recipes/tripost-arithmetic.yaml end to end on a tiny model (baseline, three rounds of collect, edit,
train, evaluate), the editing source's resume after a crash, and the LLM verifier and improver through
the ``hf`` backend with a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import misstep
import pytest
import yaml
from misstep.recipe import validate_recipe
from misstep.testing import build_tiny_model

from misstep_tripost.convert import gold_text
from misstep_tripost.editing import edit_replies
from misstep_tripost.improvers import LLMImprover
from misstep_tripost.tasks import ArithmeticTasks
from misstep_tripost.text import render_interaction
from misstep_tripost.verifiers import LLMVerifier

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tripost-arithmetic.yaml"
SMALL = {"lengths": [2], "depths": [1]}  # the tiny model learns the format of these quickly


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer was trained on arithmetic rationales and TriPosT feedback."""
    tasks = list(ArithmeticTasks(ArithmeticTasks.Options(count=60, seed=7, **SMALL)).load())
    corpus = [f"Q: {task.question}\n{gold_text(task, feedback=True)}" for task in tasks]
    corpus.append('Feedback: Step (1) to step (3) are correct. In step (4) the part "(1 + 2) = 4" is incorrect. '
                  "This is because there is a calculation error, since (1 + 2) is not equal to 4.\nUpdated Answer:")
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", corpus=corpus, vocab_size=600, hidden_size=64,
                            context=2048)


def tiny_recipe(model: Path) -> dict:
    """The recipe with a tiny model and tiny sizes: 16 training questions, 6 test questions, short runs."""
    data = yaml.safe_load(RECIPE.read_text())
    data["model"] = {"path": str(model)}
    for stage in data["stages"]:
        if stage["use"] == "tasks":
            stage["tasks"][0].update(count=16, **SMALL)
        elif stage["use"] == "train":
            baseline = stage["name"] == "baseline"
            stage.pop("epochs")
            stage.update(max_steps=120 if baseline else 10, learning_rate=1e-2 if baseline else 1e-4, batch_size=8,
                         max_length=512, save_steps=1000, logging_steps=1000)
        elif stage["use"] == "tripost-evaluate":
            stage.update(tasks=[{"use": "tripost-arithmetic", "split": "test", "count": 4, **SMALL},
                                {"use": "tripost-arithmetic", "split": "test", "count": 2, "lengths": [3], "depths": [1]}],
                         max_new_tokens=200)
        elif stage["use"] == "reformat":
            stage["source"] = {**stage["source"], "max_new_tokens": 200, "temperature": 0.0}
    return data


def test_the_recipe_runs_end_to_end_on_a_tiny_model(tiny_model: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISSTEP_CACHE", str(tmp_path / "cache"))
    recipe = validate_recipe(tiny_recipe(tiny_model), plugins=misstep.get_plugins(), file=str(RECIPE))
    names = [stage.label for stage in recipe.stages]
    assert names == ["train-tasks", "rationales", "baseline", "eval-baseline", "edit-1", "round-1", "eval-1",
                     "edit-2", "round-2", "eval-2", "edit-3", "round-3", "eval-3"]
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    outputs = run.outputs
    assert outputs["rationales"]["count"] == 16
    for round_ in (1, 2, 3):
        summary = json.loads((run.dir / f"edit-{round_}" / "summary.json").read_text())
        assert sum(summary["trajectories"].values()) == 16  # every question once, whatever became of it
        assert summary["examples"] == outputs[f"edit-{round_}"]["count"] > 0
        assert summary["examples"] == summary["improvement"] + summary["non_improvement"] + summary["gold"]
        edits = [json.loads(line) for line in (run.dir / f"edit-{round_}" / "edits.jsonl").read_text().splitlines()]
        student = "baseline" if round_ == 1 else f"round-{round_ - 1}"
        assert {e["provenance"]["model"] for e in edits} == {str(run.dir / student / "model")}
        info = json.loads((run.dir / f"round-{round_}" / "model" / "misstep.json").read_text())
        assert info["stage"] == f"round-{round_}"
        examples = [json.loads(line) for line in (run.dir / f"edit-{round_}" / "examples.jsonl").read_text().splitlines()]
        for example in examples:  # weighted from "\nFeedback:" on, unless gold or right at the first try
            assistant = example["messages"][1]
            if assistant["spans"]:
                end = assistant["content"].index("\nFeedback:")
                assert assistant["spans"] == [{"start": 0, "end": end, "weight": 1.0}] and assistant["weight"] == 1.5
            else:
                assert assistant["weight"] == 1.0 and "Updated Answer:" not in assistant["content"]
    for name in ("eval-baseline", "eval-1", "eval-2", "eval-3"):
        metrics = json.loads((run.dir / name / "metrics.json").read_text())["metrics"]
        assert metrics["seen"]["count"] == 2 and metrics["unseen"]["count"] == 4 and metrics["all"]["count"] == 6
        assert 0 <= outputs[name]["accuracy"] <= 1 and "accuracy_unseen" in outputs[name]
        assert len((run.dir / name / "predictions.jsonl").read_text().splitlines()) == 6
    again = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)  # finished: every stage is skipped
    assert again.outputs == outputs


def test_the_editing_source_resumes_after_a_crash(plugins: misstep.Plugins, tmp_path: Path) -> None:
    from tripost_components import StudentBackend

    recipe = validate_recipe({
        "name": "resume", "stages": [
            {"use": "tasks", "name": "train-tasks", "tasks": {"use": "tripost-arithmetic", "count": 5, **SMALL}},
            {"use": "reformat", "name": "edit", "tasks": "train-tasks", "reformatter": {"use": "tripost"},
             "source": {"use": "tripost-edit", "tasks": "train-tasks", "backend": {"use": "tripost-student"},
                        "verifier": "tripost-scripted", "batch_size": 2}},
        ]}, plugins=plugins)
    StudentBackend.crash_at = 2
    with pytest.raises(RuntimeError, match="crashed"):
        misstep.run_recipe(recipe, run_dir=tmp_path, plugins=plugins, quiet=True)
    store = tmp_path / "edit" / "edits.jsonl"
    assert len(store.read_text().splitlines()) == 2  # the first batch was written as it finished
    StudentBackend.crash_at = None
    run = misstep.run_recipe(recipe, run_dir=tmp_path, plugins=plugins, quiet=True)
    edits = [misstep.Trajectory.model_validate_json(line) for line in store.read_text().splitlines()]
    assert sorted(e.task_id for e in edits) == sorted({e.task_id for e in edits}) and len(edits) == 5
    assert StudentBackend.calls == 2 + 2  # two batches before the crash, then only the two left
    assert {e.metadata["outcome"] for e in edits} == {"edited"}
    summary = json.loads((tmp_path / "edit" / "summary.json").read_text())
    assert summary["trajectories"] == {"edited": 5} and summary["improvement"] == 5
    assert run.outputs["edit"]["count"] == summary["examples"] == 5 + 4 + 4  # improvement, ceil(5 / 1.5), gold


def test_llm_verifier_and_improver_through_the_hf_backend(tiny_model: Path) -> None:
    """A tiny model's replies are nonsense: the loop rejects and counts them and never crashes."""
    backend = misstep.BackendRef(use="hf", model={"path": str(tiny_model)}, device="cpu").resolve(misstep.get_plugins())
    verifier = LLMVerifier(LLMVerifier.Options(backend=backend, examples="", max_new_tokens=40))
    improver = LLMImprover(use="llm", backend=backend, examples="", max_new_tokens=60, temperature=0.0)
    tasks = list(ArithmeticTasks(ArithmeticTasks.Options(count=3, seed=1, **SMALL)).load())
    wrong = [gold_text(task, feedback=False).rsplit("is ", 1)[0] + f"is {task.answer + 1}." for task in tasks]
    right = gold_text(tasks[0], feedback=False)
    try:
        edits = edit_replies(tasks + tasks[:1], wrong + [right], verifier.critique, improver.improve, max_updates=2)
    finally:
        verifier.close()
        improver.close()
    assert edits[-1].outcome == "kept"  # a right answer needs no LLM
    for edit in edits[:-1]:
        assert edit.outcome in ("edited", "cut", "dropped")
        if edit.reason == "verifier":
            assert edit.rejected_feedback == 1 and edit.updates == 0
        if edit.reason == "not fixed":
            assert edit.updates == 2 and edit.rejected_updates + edit.rejected_feedback >= 1
        assert render_interaction("", edit.attempts, edit.feedbacks) is not None


def test_tokens_from_the_first_feedback_on_carry_the_section_weight(tiny_model: Path) -> None:
    """What the core ``sft`` loss sees of a TriPosT example: weight 1 before "Feedback:", 1.5 from there on
    to the end-of-turn token."""
    from misstep.models import load_tokenizer
    from misstep.training.encode import encode_example

    from misstep_tripost.convert import weighted

    task = next(iter(ArithmeticTasks(ArithmeticTasks.Options(count=1, **SMALL)).load()))
    wrong = gold_text(task, feedback=False).rsplit("is ", 1)[0] + f"is {task.answer + 1}."
    text = (f"{wrong}\nFeedback: In step (Final response) the part \"the answer is {task.answer + 1}.\" is incorrect.\n"
            f"{gold_text(task, feedback=True).replace('Answer:', 'Updated Answer:', 1)}")
    example = misstep.Example(id="x", messages=[misstep.Message(role="user", content=f"Q: {task.question}"),
                                                weighted(text, 1.5)])
    tokenizer = load_tokenizer(misstep.ModelSpec(path=str(tiny_model)))
    encoded = encode_example(example, tokenizer, 2048)
    trained = [(token, weight) for token, label, weight in zip(encoded.input_ids, encoded.labels, encoded.weights)
               if label != -100]
    first = next(i for i, (_, weight) in enumerate(trained) if weight == 1.5)
    assert tokenizer.decode([token for token, _ in trained[first:]]).lstrip("\n").startswith("Feedback:")
    assert tokenizer.decode([token for token, _ in trained[:first]]).rstrip("\n") == wrong
    assert {weight for _, weight in trained[:first]} == {1.0}
    assert {weight for _, weight in trained[first:]} == {1.5}  # the end-of-turn token too, as in the reference
    assert trained[-1][0] == tokenizer.convert_tokens_to_ids("<|im_end|>")
