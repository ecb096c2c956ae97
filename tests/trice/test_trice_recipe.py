"""The shipped TRICE recipes: both validate, and recipes/trice-math.yaml runs end to end on tiny models.

In the end-to-end run the student is a tiny random Llama and the teacher a second tiny Llama, taught
here to write ``calculator(a+b)``, served by ``transformers serve`` on 127.0.0.1 and reached through the
``openai`` backend. Stage I trains a LoRA adapter (sft), stage II continues it with the rrhf loss; the
tool-use rate is reported before training and after each stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import misstep
import pytest
import yaml
from misstep.testing import served, teach
from misstep_trice.evaluate import Result
from misstep_trice.prompts import StudentPrompt, TeacherPrompt

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

TRAIN = [(12, 7), (23, 5), (8, 9), (31, 14), (6, 40), (17, 3)]
UNSEEN = [(4, 5), (16, 2), (30, 11)]
TEACHER_PROMPT = {"system": "Write calculator(formula) that computes the Golden answer.", "shots": []}


def question(a: int, b: int, thing: str = "apples") -> str:
    return f"Tom has {a} {thing} and buys {b} more. How many {thing} does he have?"


def task_rows(pairs: list[tuple[int, int]], thing: str, prefix: str) -> list[dict]:
    return [{"id": f"{prefix}-{i}", "question": question(a, b, thing), "answer": a + b} for i, (a, b) in enumerate(pairs)]


def tokenizer_text(model: Path, row: dict) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model).decode([t for t in row["labels"] if t != -100])


def mean_nll(model: Path, rows: list[dict]) -> float:
    """Mean negative log-likelihood of the trained tokens of encoded examples under ``model``."""
    import torch
    from misstep.models import load_model

    loaded = load_model(misstep.ModelSpec(path=str(model)))
    with torch.no_grad():
        return sum(loaded(input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])).loss.item()
                   for row in rows) / len(rows)


@pytest.fixture(scope="module")
def teacher_url(tmp_path_factory: pytest.TempPathFactory):
    """A tiny teacher that writes the calculator call for each training question (asked the stage-I way,
    with the gold answer) and, asked the student's way, calls the tool or answers plainly."""
    from misstep.testing import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("teacher"), seed=1)
    pairs = []
    for number, (a, b) in enumerate(TRAIN):
        task = misstep.Task(id=str(number), question=question(a, b), answer=a + b)
        pairs.append((TeacherPrompt(**TEACHER_PROMPT).render(task), f"calculator({a}+{b})"))
        pairs.append((StudentPrompt().render(task.question),
                      f"calculator({a}+{b})" if number % 2 else f"The answer is {a + b}."))
    teach(folder, pairs, steps=150, learning_rate=0.01)
    if shutil.which("transformers") is None:
        pytest.skip("the `transformers` command is not installed (pip install 'misstep[serve]')")
    with served(folder, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, str(folder)


@pytest.mark.parametrize("name", ["trice-math.yaml", "trice-qa.yaml"])
def test_shipped_recipes_validate(name: str, plugins: misstep.Plugins) -> None:
    recipe = misstep.load_recipe(RECIPES / name, plugins=plugins, check_files=False)  # data is downloaded separately
    uses = [stage.use for stage in recipe.stages]
    assert uses.count("train") == 2 and uses.count("trice-evaluate") == 3
    second = [s for s in recipe.stages if s.use == "train"][1]
    assert second.options.loss.use == "rrhf" and second.options.init == "train-stage1"


@pytest.mark.slow
def test_two_stage_math_recipe_end_to_end(teacher_url, tmp_path: Path, tasks_file, plugins, monkeypatch) -> None:
    monkeypatch.setenv("MISSTEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    url, teacher = teacher_url
    from misstep.testing import build_tiny_model

    # the student starts out answering plainly: right on the even questions, one off on the odd ones
    student = build_tiny_model(tmp_path / "student")
    teach(student, [(StudentPrompt().render(question(a, b)), f"The answer is {a + b + number % 2}.")
                    for number, (a, b) in enumerate(TRAIN)], steps=150, learning_rate=0.01)
    train = tasks_file(task_rows(TRAIN, "apples", "train"), "train.jsonl")
    seen = {"use": "jsonl", "path": str(train), "dataset": "seen"}
    unseen = {"use": "jsonl", "path": str(tasks_file(task_rows(UNSEEN, "pens", "pens"), "unseen.jsonl")),
              "dataset": "unseen"}
    backend = {"use": "openai", "base_url": url, "model": teacher, "retries": 1, "concurrency": 4}
    short = "max_new_tokens=24"

    def flow(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()

    overrides = [
        f"model.path={student}",
        "model.lora.target_modules=all-linear",
        f"stages.train-tasks.tasks={flow([{'use': 'jsonl', 'path': str(train), 'dataset': 'apples'}])}",
        *(f"stages.{name}.tasks={flow([seen, unseen])}" for name in ("eval-base", "eval-stage1", "eval-stage2")),
        *(f"stages.{name}.{short}" for name in ("eval-base", "eval-stage1", "eval-stage2", "stage1", "rank")),
        f"stages.stage1.teacher={flow(backend)}",
        f"stages.stage1.teacher_prompt={flow(TEACHER_PROMPT)}",
        f"stages.rank.sources.1.backend={flow(backend)}",
        "stages.rank.sources.1.shots=[]",
        # few, quick steps: a high learning rate so that the tiny student picks up the calls
        "stages.train-stage1.epochs=40", "stages.train-stage1.learning_rate=0.01",
        "stages.train-stage1.batch_size=3", "stages.train-stage1.gradient_accumulation=1",
        "stages.train-stage2.epochs=1", "stages.train-stage2.batch_size=2",
        "stages.train-stage2.gradient_accumulation=1", "stages.train-stage2.logging_steps=1",
    ]
    recipe = misstep.load_recipe(RECIPES / "trice-math.yaml", overrides, plugins=plugins)
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    out = run.outputs

    # stage I: right answers are their own targets; for wrong ones the teacher's call, checked by execution
    assert out["stage1"]["outcomes"] == {"student": 3, "teacher": 3}
    examples = list(misstep.read_jsonl(run.dir / out["stage1"]["examples"]["path"], misstep.Example))
    targets = {e.id: e.messages[-1].content for e in examples}
    assert targets == {f"train-{n}": f"The answer is {a + b}." if n % 2 == 0 else f"calculator({a}+{b})"
                       for n, (a, b) in enumerate(TRAIN)}
    stage1_model = run.dir / out["train-stage1"]["model"]["path"]
    assert json.loads((stage1_model / "misstep.json").read_text())["adapter"] is True
    # the LoRA adapter learnt the teacher's calls: they became far more likely than under the student
    calls = [row for row in map(json.loads, (run.dir / "train-stage1" / "dataset.jsonl").read_text().splitlines())
             if "calculator" in tokenizer_text(student, row)]
    assert len(calls) == 3
    assert mean_nll(stage1_model, calls) < mean_nll(student, calls) - 2.0

    # stage II data: pools from the gold target, the served teacher, the stage-I model and the base model
    ranked = list(misstep.read_jsonl(run.dir / out["rank"]["examples"]["path"], misstep.RankedExample))
    assert len(ranked) == len(TRAIN)
    for example in ranked:
        origins = [c.metadata["origin"] for c in example.candidates]
        assert origins == ["gold", "teacher", "stage1-model", "stage1-model", "base-model"]
        gold, teacher_reply, base = example.candidates[0], example.candidates[1], example.candidates[4]
        assert gold.reward == 4.0 and teacher_reply.metadata["correct"]
        assert base.metadata["correct"] == (int(example.id.split("-")[1]) % 2 == 0)
    assert out["train-stage2"]["steps"] == 3  # 6 questions, 2 per batch
    logged = [json.loads(line) for line in (run.dir / "train-stage2" / "log.jsonl").read_text().splitlines()]
    assert {"rank_loss", "sft_loss", "pair_accuracy"} <= {key for row in logged for key in row}
    stage2 = json.loads((run.dir / out["train-stage2"]["model"]["path"] / "misstep.json").read_text())
    assert stage2["adapter"] is True and stage2["loss"]["use"] == "rrhf"

    # accuracy and tool-use rate before training and after each stage, per dataset and overall
    count = len(TRAIN) + len(UNSEEN)
    for name in ("eval-base", "eval-stage1", "eval-stage2"):
        results = list(misstep.read_jsonl(run.dir / out[name]["results"]["path"], Result))
        assert len(results) == count
        assert out[name]["tool_use_rate"] == pytest.approx(sum(r.tool is not None for r in results) / count)
        assert out[name]["accuracy"] == pytest.approx(sum(r.correct for r in results) / count)
        assert set(out[name]["datasets"]) == {"seen", "unseen"}
    assert out["eval-base"]["datasets"]["seen"] == {"accuracy": 0.5, "tool_use_rate": 0.0, "count": len(TRAIN)}
    report = (run.dir / out["trice-report"]["table"]["path"]).read_text()
    for name in ("eval-base", "eval-stage1", "eval-stage2"):
        assert f"| {name} | all |" in report
    assert out["trice-report"]["tool_use_rate"]["eval-stage1"] == out["eval-stage1"]["tool_use_rate"]


QA = [
    ("Who wrote Hamlet?", ["William Shakespeare", "Shakespeare"], "Hamlet author"),
    ("What is the capital of France?", ["Paris"], "capital of France"),
    ("Which river flows through Cairo?", ["Nile"], "Cairo river"),
    ("Who painted the Mona Lisa?", ["Leonardo da Vinci"], "Mona Lisa painter"),
]
PASSAGES = [
    {"title": "Hamlet", "text": "Hamlet is a tragedy written by William Shakespeare around 1600."},
    {"title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"title": "Cairo", "text": "Cairo lies on the banks of the Nile."},
    {"title": "Mona Lisa", "text": "The Mona Lisa is a portrait painted by Leonardo da Vinci."},
]


def test_retrieval_qa_recipe_end_to_end(tiny_model, tmp_path: Path, tasks_file, plugins, monkeypatch) -> None:
    """recipes/trice-qa.yaml as shipped, with the local corpus, a tiny student and scripted teachers."""
    monkeypatch.setenv("MISSTEP_CACHE", str(tmp_path / "cache"))
    tasks = tasks_file([{"id": f"q{i}", "question": q, "answer": a} for i, (q, a, _) in enumerate(QA)], "qa.jsonl")
    corpus = tasks_file(PASSAGES, "passages.jsonl")
    calls = {q.rstrip("?"): f"search({term})" for q, _, term in QA}
    calls["Cairo"] = "search(Danube)"  # a call whose passages miss the answer: dropped in stage I

    def flow(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()

    teacher = flow({"use": "trice-scripted", "replies": calls})
    test_set = flow([{"use": "jsonl", "path": str(tasks), "dataset": "qa"}])
    overrides = [
        f"model.path={tiny_model}", "model.lora.target_modules=all-linear",
        f"stages.train-tasks.tasks={test_set}",
        *(f"stages.{name}.tasks={test_set}" for name in ("eval-base", "eval-stage1", "eval-stage2")),
        f"stages.eval-base.tools.0.corpus={corpus}",  # an anchor: every stage searches this corpus
        *(f"stages.{name}.max_new_tokens=12" for name in ("eval-base", "eval-stage1", "eval-stage2", "stage1", "rank")),
        f"stages.stage1.teacher={teacher}", f"stages.rank.sources.1.backend={teacher}",
        "stages.train-stage1.epochs=1", "stages.train-stage1.batch_size=2", "stages.train-stage1.gradient_accumulation=1",
        "stages.train-stage2.epochs=1", "stages.train-stage2.batch_size=2", "stages.train-stage2.gradient_accumulation=1",
    ]
    recipe = misstep.load_recipe(RECIPES / "trice-qa.yaml", overrides, plugins=plugins)
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    out = run.outputs
    assert out["stage1"]["outcomes"] == {"teacher": 3, "wrong-call": 1}  # the random student is never right
    ranked = list(misstep.read_jsonl(run.dir / out["rank"]["examples"]["path"], misstep.RankedExample))
    by_id = {r.id: [c.metadata["origin"] for c in r.candidates] for r in ranked}
    assert by_id["q0"] == ["gold", "teacher", "stage1-model", "stage1-model", "base-model"]
    assert by_id["q2"] == ["teacher", "stage1-model", "stage1-model", "base-model"]  # no gold for the dropped call
    assert out["train-stage2"]["steps"] == 2
    for name in ("eval-base", "eval-stage1", "eval-stage2"):
        results = list(misstep.read_jsonl(run.dir / out[name]["results"]["path"], Result))
        assert len(results) == len(QA) and {"accuracy", "tool_use_rate"} <= set(out[name])
    assert "| eval-stage2 | all |" in (run.dir / out["trice-report"]["table"]["path"]).read_text()
