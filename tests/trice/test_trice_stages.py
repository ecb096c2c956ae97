"""The TRICE data stages on scripted backends and the real calculator: stage I, ranking, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import misstep
from misstep.backends.hf import HFBackend
from misstep_trice.prompts import StudentPrompt
from misstep_trice.stage2 import PoolEntry
from misstep_trice.stage1 import Decision
from trice_components import Scripted

QUESTIONS = [
    {"id": "add", "question": "What is 2 plus 3?", "answer": "5"},
    {"id": "mul", "question": "What is 6 times 7?", "answer": "#### 42"},
    {"id": "nocall", "question": "What is 5 plus 5?", "answer": "10"},
    {"id": "wrongcall", "question": "What is 4 plus 5?", "answer": "9"},
    {"id": "leak", "question": "What is 3 plus 4?", "answer": "7"},
]
STUDENT = {"2 plus 3": "The answer is 5.", "6 times 7": "It is 40.", "5 plus 5": "11", "4 plus 5": "8", "3 plus 4": "6"}
TEACHER = {"6 times 7": "calculator(6*7)", "5 plus 5": "The answer is 10.", "4 plus 5": "calculator(4+4)",
           "3 plus 4": "calculator(7)"}


def stage1_recipe(tasks: Path, *, verify: bool = True, leaks: bool = True) -> str:
    return f"""
    name: stage1
    stages:
      - use: tasks
        tasks: {{use: jsonl, path: {tasks}, dataset: toy}}
      - use: trice-stage1
        name: stage1
        tasks: tasks
        student: {{use: trice-scripted, replies: {json.dumps(STUDENT)}}}
        teacher: {{use: trice-scripted, replies: {json.dumps(TEACHER)}}}
        verify_calls: {str(verify).lower()}
        drop_leaked_answers: {str(leaks).lower()}
    """


def examples_of(path: Path) -> dict[str, misstep.Example]:
    return {e.id: e for e in misstep.read_jsonl(path, misstep.Example)}


def test_stage1_keeps_right_answers_and_verified_teacher_calls(tasks_file, run) -> None:
    result = run(stage1_recipe(tasks_file(QUESTIONS)))
    outputs = result.outputs["stage1"]
    examples = examples_of(result.dir / outputs["examples"]["path"])
    assert sorted(examples) == ["add", "mul"]
    assert [m.role for m in examples["add"].messages] == ["user", "assistant"]
    assert examples["add"].messages[0].content.startswith("Given a math problem, please answer it and you can use")
    assert examples["add"].messages[-1].content == "The answer is 5."  # its own right answer
    assert examples["mul"].messages[-1].content == "calculator(6*7)"  # the teacher's verified call
    assert examples["mul"].metadata["source"] == "teacher"
    assert outputs["outcomes"] == {"student": 1, "teacher": 1, "no-call": 1, "wrong-call": 1, "leaked-answer": 1}
    assert outputs["student_accuracy"] == 0.2
    # the teacher saw the gold answer (as a number) and only the wrongly answered questions
    teacher_prompts = [text for text in Scripted.seen if "Golden answers" in text]
    assert len(teacher_prompts) == 4
    assert any("Question: What is 6 times 7?\nGolden answers: ['42']\nOutput: " in t for t in teacher_prompts)


def test_stage1_without_checks_keeps_wrong_calls_and_leaked_answers(tasks_file, run) -> None:
    result = run(stage1_recipe(tasks_file(QUESTIONS), verify=False, leaks=False))
    examples = examples_of(result.dir / result.outputs["stage1"]["examples"]["path"])
    assert sorted(examples) == ["add", "leak", "mul", "wrongcall"]
    assert examples["wrongcall"].messages[-1].content == "calculator(4+4)"
    assert examples["leak"].messages[-1].content == "calculator(7)"


def test_stage1_resumes_without_asking_again(tasks_file, run, tmp_path) -> None:
    recipe = stage1_recipe(tasks_file(QUESTIONS))
    stage_dir = tmp_path / "run" / "stage1"
    stage_dir.mkdir(parents=True)
    done = Decision(task_id="mul", student="41", teacher="calculator(6*7)", target="calculator(6*7)", outcome="teacher")
    # a decision already stored, and a last line cut short by a crash
    (stage_dir / "decisions.jsonl").write_text(done.model_dump_json() + "\n" + '{"task_id": "add", "stu')
    result = run(recipe)
    assert not any("6 times 7" in text for text in Scripted.seen)
    decisions = list(misstep.read_jsonl(stage_dir / "decisions.jsonl", Decision))
    assert sorted(d.task_id for d in decisions) == ["add", "leak", "mul", "nocall", "wrongcall"]
    assert result.outputs["stage1"]["count"] == 2


def rank_recipe(tasks: Path, pool_file: Path, scheme: str = "paper", allow_empty: bool = False) -> str:
    sampled = {"2 plus 3": ["calculator(2+3)", "It is 6."], "6 times 7": ["42", "calculator(6+7)"],
               "4 plus 5": ["calculator(4+5)", "9"]}
    return stage1_recipe(tasks) + f"""
      - use: trice-rank
        name: rank
        tasks: stage1
        scheme: {scheme}
        sources:
          - {{source: target}}
          - {{source: generate, backend: {{use: trice-scripted, replies: {json.dumps(sampled)}}}, samples: 2,
             label: sampled}}
          - {{source: file, path: {pool_file}, id: qid, response: text, allow_empty: {str(allow_empty).lower()}}}
    """


def test_rank_builds_pools_of_varying_size_and_ranks_by_execution(tasks_file, run, tmp_path) -> None:
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text('{"qid": "mul", "text": "calculator(6*7.5)"}\n{"qid": "mul", "text": "about 100"}\n')
    result = run(rank_recipe(tasks_file(QUESTIONS), pool_file))
    ranked = {r.id: r for r in misstep.read_jsonl(result.dir / result.outputs["rank"]["examples"]["path"],
                                                  misstep.RankedExample)}
    # nocall and leak have no gold; they still have the 2 sampled candidates (default reply) -> kept with k = 2
    assert {k: len(r.candidates) for k, r in ranked.items()} == {"add": 3, "mul": 5, "nocall": 2, "wrongcall": 2,
                                                               "leak": 2}
    mul = ranked["mul"]
    texts = [c.messages[0].content for c in mul.candidates]
    assert texts == ["calculator(6*7)", "42", "calculator(6+7)", "calculator(6*7.5)", "about 100"]
    rewards = [c.reward for c in mul.candidates]
    # gold > correct with the other decision > wrong by distance: 45 (3 off), 13 (29 off), 100 (58 off)
    assert rewards[0] == 4.0 and rewards[1] == 2.0
    assert rewards[3] > rewards[2] > rewards[4] > 0
    assert [c.metadata["origin"] for c in mul.candidates] == ["gold", "sampled", "sampled", "pool", "pool"]
    add = ranked["add"]
    assert [c.reward for c in add.candidates][:2] == [4.0, 2.0]  # plain gold; the calculator call is correct
    assert add.prompt[-1].content.endswith("What is 2 plus 3?")
    summary = json.loads((result.dir / "rank" / "summary.json").read_text())
    assert summary["origins"]["gold"] == {"count": 2, "accuracy": 1.0, "tool_use_rate": 0.5}


def test_rank_reference_scheme_and_minimum_pool(tasks_file, run, tmp_path) -> None:
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("")  # an empty pool file, declared as possibly empty
    with pytest.raises(misstep.DataError, match=r"pool.jsonl: the file holds no records.*allow_empty: true"):
        run(rank_recipe(tasks_file(QUESTIONS), pool_file, scheme="reference"))
    recipe = rank_recipe(tasks_file(QUESTIONS), pool_file, scheme="reference", allow_empty=True)
    result = run(recipe.replace("scheme: reference", "scheme: reference\n        min_candidates: 3"))
    ranked = {r.id: r for r in misstep.read_jsonl(result.dir / result.outputs["rank"]["examples"]["path"],
                                                  misstep.RankedExample)}
    assert sorted(ranked) == ["add", "mul"]
    assert [c.reward for c in ranked["mul"].candidates] == [20.0, 15.0, 10.0]
    assert result.outputs["rank"]["skipped"] == 3


def test_rank_reports_bad_pool_file(tasks_file, run, tmp_path) -> None:
    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text('{"qid": "mul", "text": "1"}\n{"id": "add"}\n')
    with pytest.raises(misstep.DataError, match=r"pool.jsonl:2: expected a JSON object with 'qid' and 'text'"):
        run(rank_recipe(tasks_file(QUESTIONS), pool_file))


def test_evaluate_reports_accuracy_and_tool_use_per_dataset(tasks_file, run) -> None:
    first = tasks_file(QUESTIONS[:2], "a.jsonl")
    second = tasks_file(QUESTIONS[2:4], "b.jsonl")
    replies = {"2 plus 3": "5", "6 times 7": "calculator(6*7)", "5 plus 5": "calculator(5+6)", "4 plus 5": "9"}
    result = run(f"""
    name: evaluate
    stages:
      - use: trice-evaluate
        tasks: [{{use: jsonl, path: {first}, dataset: a}}, {{use: jsonl, path: {second}, dataset: b}}]
        backend: {{use: trice-scripted, replies: {json.dumps(replies)}}}
    """)
    outputs = result.outputs["trice-evaluate"]
    assert outputs["accuracy"] == 0.75 and outputs["tool_use_rate"] == 0.5
    assert outputs["datasets"]["a"] == {"accuracy": 1.0, "tool_use_rate": 0.5, "count": 2}
    assert outputs["datasets"]["b"] == {"accuracy": 0.5, "tool_use_rate": 0.5, "count": 2}
    table = (result.dir / outputs["table"]["path"]).read_text()
    assert "| dataset | count | accuracy | tool use rate |" in table and "| all | 4 | 75.00% | 50.00% |" in table


QA = [
    {"id": "hamlet", "question": "Who wrote Hamlet?", "answer": ["William Shakespeare", "Shakespeare"]},
    {"id": "paris", "question": "What is the capital of France?", "answer": "Paris"},
    {"id": "cairo", "question": "Which river flows through Cairo?", "answer": ["Nile"]},
]
PASSAGES = [
    {"title": "Hamlet", "text": "Hamlet is a tragedy written by William Shakespeare around 1600."},
    {"title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"title": "Danube", "text": "The Danube flows through Vienna and Budapest."},
    {"title": "Cairo", "text": "Cairo lies on the banks of the Nile."},
]


def test_retrieval_qa_stage1_and_evaluation_read_the_passages(tasks_file, run, tmp_path) -> None:
    corpus = tasks_file(PASSAGES, "passages.jsonl")
    tasks = tasks_file(QA, "qa.jsonl")
    student = {"Who wrote Hamlet": "Christopher Marlowe", "capital of France": "Paris", "through Cairo": "The Amazon"}
    teacher = {"Who wrote Hamlet": "search(Hamlet author)", "through Cairo": "search(Danube)"}
    # at evaluation the model first calls the tool, then answers again with the passages before the question
    evaluated = {"tragedy written by": "It was Shakespeare.", "Danube flows": "The Danube.",
                 "Who wrote Hamlet": "search(Hamlet)", "capital of France": "Paris", "through Cairo": "search(Danube)"}
    tools = f"[{{use: search, corpus: {corpus}, k: 1}}]"
    result = run(f"""
    name: qa
    stages:
      - use: tasks
        tasks: {{use: jsonl, path: {tasks}, dataset: qa}}
      - use: trice-stage1
        name: stage1
        tasks: tasks
        student: {{use: trice-scripted, replies: {json.dumps(student)}}}
        teacher: {{use: trice-scripted, replies: {json.dumps(teacher)}}}
        teacher_prompt: {{preset: qa}}
        prompt: {{preset: qa}}
        tools: {tools}
        verifier: trice-qa
      - use: trice-evaluate
        tasks: [{{use: jsonl, path: {tasks}, dataset: qa}}]
        backend: {{use: trice-scripted, replies: {json.dumps(evaluated)}}}
        prompt: {{preset: qa}}
        tools: {tools}
        verifier: trice-qa
        read_observations: true
    """)
    stage1 = result.outputs["stage1"]
    # the Hamlet call retrieves the passage with the answer; the Danube call does not reach "Nile"
    assert stage1["outcomes"] == {"student": 1, "teacher": 1, "wrong-call": 1}
    examples = examples_of(result.dir / stage1["examples"]["path"])
    assert examples["hamlet"].messages[-1].content == "search(Hamlet author)"
    assert examples["paris"].messages[0].content.startswith("Given a question, please answer it and you can use a search")
    assert any("Golden answers: ['William Shakespeare', 'Shakespeare']" in t for t in Scripted.seen)
    rows = {r["task_id"]: r for r in map(json.loads, (result.dir / "trice-evaluate" / "results.jsonl").open())}
    assert rows["hamlet"]["observation"].startswith(" #1: Hamlet")
    assert rows["hamlet"]["prediction"] == "It was Shakespeare." and rows["hamlet"]["correct"]
    assert rows["cairo"]["prediction"] == "The Danube." and not rows["cairo"]["correct"]
    outputs = result.outputs["trice-evaluate"]
    assert outputs["accuracy"] == pytest.approx(2 / 3) and outputs["tool_use_rate"] == pytest.approx(2 / 3)


def test_rank_pools_the_best_beams_of_a_model(tasks_file, run, tiny_model) -> None:
    recipe = stage1_recipe(tasks_file(QUESTIONS[:2])) + f"""
      - use: trice-rank
        name: rank
        tasks: stage1
        max_new_tokens: 8
        sources:
          - {{source: target}}
          - {{source: generate, model: {{path: {tiny_model}}}, num_beams: 3, samples: 3, label: beams}}
    """
    result = run(recipe)
    pool = list(misstep.read_jsonl(result.dir / "rank" / "pool-1.jsonl", PoolEntry))
    backend = HFBackend(HFBackend.Options(model=misstep.ModelSpec(path=str(tiny_model)), device="cpu"))
    prompt = StudentPrompt()
    expected = backend.generate_n([prompt.render(q["question"]) for q in QUESTIONS[:2]],
                                  [misstep.Sampling(max_new_tokens=8, num_beams=3)] * 2, 3)
    assert [(e.task_id, e.origin, e.response) for e in pool] == [
        (q["id"], "beams", text) for q, texts in zip(QUESTIONS[:2], expected) for text in texts]
    ranked = list(misstep.read_jsonl(result.dir / result.outputs["rank"]["examples"]["path"], misstep.RankedExample))
    assert [len(r.candidates) for r in ranked] == [4, 4]  # gold + 3 beams


def test_a_beam_pool_cannot_return_more_than_its_beams(tasks_file, run) -> None:
    recipe = stage1_recipe(tasks_file(QUESTIONS)) + """
      - use: trice-rank
        tasks: stage1
        sources: [{source: generate, num_beams: 2, samples: 3}]
    """
    with pytest.raises(misstep.RecipeError, match=r"samples \(3\) must not exceed num_beams \(2\)"):
        run(recipe)


def test_evaluate_decodes_with_beam_search_when_asked(tasks_file, run, tiny_model) -> None:
    tasks = tasks_file(QUESTIONS[:2])
    result = run(f"""
    name: evaluate
    stages:
      - use: trice-evaluate
        tasks: [{{use: jsonl, path: {tasks}, dataset: a}}]
        model: {{path: {tiny_model}}}
        max_new_tokens: 8
        num_beams: 3
    """)
    results = [json.loads(line) for line in (result.dir / "trice-evaluate" / "results.jsonl").read_text().splitlines()]
    backend = HFBackend(HFBackend.Options(model=misstep.ModelSpec(path=str(tiny_model)), device="cpu"))
    beams = backend.generate([StudentPrompt().render(q["question"]) for q in QUESTIONS[:2]],
                             [misstep.Sampling(max_new_tokens=8, num_beams=3)] * 2)
    assert [row["response"] for row in results] == beams


def test_rank_refuses_target_examples_with_native_tool_calls(tasks_file, run, tmp_path) -> None:
    call = misstep.ToolCall(id="call_0", name="calculator", arguments={"expression": "2+3"})
    examples = tmp_path / "examples.jsonl"
    misstep.write_jsonl(examples, [misstep.Example(id="add", metadata={"task_id": "add"}, messages=[
        misstep.Message(role="user", content="What is 2 plus 3?"), misstep.Message(role="assistant", tool_calls=[call]),
        misstep.Message(role="tool", content="5", tool_call_id="call_0"), misstep.Message(role="assistant", content="5")])])
    recipe = f"""
    name: native
    stages:
      - use: tasks
        tasks: {{use: jsonl, path: {tasks_file(QUESTIONS)}}}
      - use: examples
        path: {examples}
      - use: trice-rank
        tasks: tasks
        sources: [{{source: target, stage: examples}}]
    """
    with pytest.raises(misstep.ComponentError, match="example 'add' has native tool calls; TRICE ranks text responses"):
        run(recipe)
