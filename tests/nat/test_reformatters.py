import json

import pytest

import misstep
from misstep import Message, RecipeError, load_recipe, run_recipe, write_jsonl
from misstep_nat.hints import CLASS_PRESETS, classify

QUESTION = "Question: What is 2 plus 3?"


def create(name, **options):
    return misstep.get_plugins().create("reformatter", name, options)


def question_turn(example):
    return [m for m in example.messages if m.role == "user"][1].content


def test_nat_hint_follows_the_label(make_trajectory):
    examples = list(create("nat").reformat([make_trajectory("t1", True), make_trajectory("t2", False)], {}))
    assert [e.metadata["label"] for e in examples] == ["positive", "negative"]
    assert question_turn(examples[0]) == (
        f"{QUESTION}. Generate a sequence of Thought and Action steps to solve the problem correctly.")
    assert question_turn(examples[1]) == (
        f"{QUESTION}. Generate a sequence of Thought and Action steps. But incorrectly solve the problem.")
    # the instruction and acknowledgement are unchanged, the agent's turns kept with their masks
    example = examples[1]
    assert example.messages[0].content.startswith("Solve a math problem with interleaving")
    assert example.messages[1].content == "I've understood your instruction, start please."
    assert [m.trained for m in example.messages] == [False, False, False, True, False, True]
    assert example.messages[-1].content == "Thought: Done.\nAction: finish[5]"


@pytest.mark.parametrize(("hints", "positive", "negative"), [
    ("good-bad", "[Good] {q}.", "[Bad] {q}."),
    ("a-b", "[A] {q}.", "[B] {q}."),
    ("1-2", "[1] {q}.", "[2] {q}."),
    ("random-sentences", "{q}. 15th-century Italy saw the formation of the two main variants that are known today.",
     "{q}. An apple is a round, edible fruit produced by an apple tree."),
])
def test_non_interpretable_presets_on_examples_and_at_inference(make_trajectory, hints, positive, negative):
    nat = create("nat", hints=hints)
    examples = list(nat.reformat([make_trajectory("t1", True), make_trajectory("t2", False)], {}))
    assert [question_turn(e) for e in examples] == [positive.format(q=QUESTION), negative.format(q=QUESTION)]
    assert nat.inference_prompt([Message(role="user", content=QUESTION)])[0].content == positive.format(q=QUESTION)


def test_custom_hints_and_position(make_trajectory):
    nat = create("nat", hints={"positive": "Solve it right.", "negative": "Solve it wrong."}, position="prefix")
    example = next(iter(nat.reformat([make_trajectory("t1", False)], {})))
    assert question_turn(example) == f"Solve it wrong. {QUESTION}."
    suffix = create("nat", hints={"positive": "(good)", "negative": "(bad)", "separator": " "})
    assert suffix.inference_prompt([Message(role="user", content="Q")])[0].content == "Q (good)"
    moved = create("nat", hints="good-bad", position="suffix")
    assert moved.inference_prompt([Message(role="user", content="Q")])[0].content == "Q. [Good]"


def test_vanilla_and_nut_add_no_hint(make_trajectory):
    data = [make_trajectory("t1", True), make_trajectory("t2", False), make_trajectory("t3", None)]
    vanilla = create("vanilla")
    assert [question_turn(e) for e in vanilla.reformat(data, {})] == [QUESTION]
    assert vanilla.report()["dropped"] == {
        "negative (vanilla keeps positives only)": 1, "unlabelled (no verdict)": 1}
    nut = create("nut")
    assert [question_turn(e) for e in nut.reformat(data, {})] == [QUESTION, QUESTION]
    prompt = misstep.PromptTemplate().render("x")
    assert vanilla.inference_prompt(prompt) == prompt == nut.inference_prompt(prompt)


@pytest.mark.parametrize(("preset", "expected"), [
    ("3-class", {0.0: "[Incorrect]", 1e-9: "[Partially Correct]", 0.5: "[Partially Correct]",
                 0.999: "[Partially Correct]", 1.0: "[Correct]"}),
    ("4-class", {0.0: "[Totally Incorrect]", 0.01: "[Mostly Incorrect]", 0.399: "[Mostly Incorrect]",
                 0.4: "[Mostly Correct]", 0.999: "[Mostly Correct]", 1.0: "[Correct]"}),
])
def test_nat_k_thresholds(preset, expected):
    classes = CLASS_PRESETS[preset]
    assert {value: classes[classify(value, classes)].hint for value in expected} == expected


def test_nat_k_reformats_by_f1_and_infers_with_the_top_class(make_trajectory):
    natk = create("nat-k", classes="4-class")
    data = [make_trajectory("t1", True, f1=1.0), make_trajectory("t2", False, f1=0.5),
            make_trajectory("t3", False, f1=0.0), make_trajectory("t4", False)]
    examples = list(natk.reformat(data, {}))
    assert [question_turn(e) for e in examples] == [
        f"[Correct] {QUESTION}.", f"[Mostly Correct] {QUESTION}.", f"[Totally Incorrect] {QUESTION}."]
    assert [e.metadata["label"] for e in examples] == ["positive", "negative", "negative"]
    assert natk.report()["dropped"] == {"no f1 in the verdict": 1}
    assert natk.inference_prompt([Message(role="user", content="Q")])[0].content == "[Correct] Q."


def test_per_question_caps_and_dedup(make_trajectory):
    data = [make_trajectory("t1", True, sample=0), make_trajectory("t1", True, answer="5.0", sample=1)]
    data += [make_trajectory("t1", False, answer=str(n), sample=2 + n) for n in range(5)]
    data.append(make_trajectory("t1", False, answer="0", sample=9))  # same turns as sample 2
    nat = create("nat")
    examples = list(nat.reformat(data, {}))
    assert [e.id for e in examples] == ["t1#0", "t1#2", "t1#3", "t1#4"]
    assert nat.report() == {
        "trajectories": 8,
        "kept": {"positive": 1, "negative": 3},
        "classes": {"positive": 1, "negative": 3},
        "dropped": {"duplicate": 1, "over negative cap per question": 2, "over positive cap per question": 1},
        "requested": {"positive": None, "negative": None},
    }
    uncapped = create("nat", max_pos_per_task=None, max_neg_per_task=None, dedup=False)
    assert len(list(uncapped.reformat(data, {}))) == 8


def test_random_sampling_is_seeded_nested_and_independent_per_group(make_trajectory):
    data = [make_trajectory(f"p{i}", True) for i in range(20)] + [make_trajectory(f"n{i}", False) for i in range(40)]

    def ids(**options):
        return [e.id for e in create("nat", sampling="random", **options).reformat(data, {})]

    small = ids(pos_num=5, neg_num=10, seed=1)
    assert len(small) == 15 and small == ids(pos_num=5, neg_num=10, seed=1)
    assert small != ids(pos_num=5, neg_num=10, seed=2)
    large = ids(pos_num=5, neg_num=30, seed=1)
    positives = [i for i in small if i.startswith("p")]
    assert positives == [i for i in large if i.startswith("p")]  # positives do not move with neg_num
    assert set(small) <= set(large)  # fewer negatives = a subset of more
    nat = create("nat", pos_num=50, neg_num=0)
    assert len(list(nat.reformat(data, {}))) == 20
    assert nat.report()["dropped"] == {"negative beyond neg_num": 40}


def test_prompt_rebuilt_from_the_task_when_asked_or_missing(make_trajectory):
    stored = make_trajectory("t1", True)
    bare = stored.model_copy(update={"messages": stored.messages[stored.prompt_len:], "prompt_len": 0})
    tasks = {"t1": misstep.Task(id="t1", question="How many?", answer=5)}
    nat = create("nat", prompt={"preset": "qa", "question": "Q: {question}"})
    [rebuilt] = list(nat.reformat([stored], tasks))
    assert rebuilt.messages[0].content.startswith("Solve a question answering task")
    assert question_turn(rebuilt) == "Q: How many?. " + nat.hints.positive
    [from_task] = list(create("vanilla").reformat([bare], tasks))
    assert question_turn(from_task) == "Question: How many?"
    vanilla = create("vanilla")
    assert list(vanilla.reformat([bare], {})) == []
    assert vanilla.report()["dropped"] == {"no question (task missing and no stored prompt)": 1}


def test_bad_options_are_reported_in_the_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nstages:\n"
        "  - use: reformat\n    trajectories: x\n    reformatter: {use: nat, hints: polite}\n"
        "  - {use: reformat, name: k, source: {use: trajectories, path: t.jsonl},"
        " reformatter: {use: nat-k, classes: [{hint: a}, {hint: b, min: 0.5}, {hint: c, min: 0.2}]}}\n"
        "  - {use: reformat, name: s, source: {use: trajectories, path: t.jsonl},"
        " reformatter: {use: nat, hints: {positive: same, negative: same}}}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, plugins=misstep.get_plugins())
    text = str(info.value)
    assert "unknown hint preset 'polite'; choose one of: math, qa, correct-incorrect, good-bad" in text
    assert "ascending order" in text
    assert "must differ" in text


def test_reformat_stage_writes_the_summary(tmp_path, make_trajectory):
    store = tmp_path / "trajectories.jsonl"
    write_jsonl(store, [make_trajectory("t1", True), make_trajectory("t1", False, answer="6"), make_trajectory("t2", None)])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: r\nstages:\n  - use: reformat\n    source: {{use: trajectories, path: {store}}}\n"
        "    reformatter: {use: nat, hints: a-b}\n")
    run = run_recipe(load_recipe(recipe, plugins=misstep.get_plugins()), run_dir=tmp_path / "run", quiet=True)
    outputs = run.outputs["reformat"]
    assert outputs["count"] == 2 and outputs["reformatter"]["hints"]["positive"] == "[A]"
    summary = json.loads((tmp_path / "run" / outputs["summary"]["path"]).read_text())
    assert summary["kept"] == {"positive": 1, "negative": 1}
    assert summary["dropped"] == {"unlabelled (no verdict)": 1}


def test_nat_k_three_classes_reformat_and_positive_is_the_top_class(make_trajectory):
    natk = create("nat-k")  # 3-class, by F1
    data = [make_trajectory("t1", False, f1=0.0), make_trajectory("t2", False, f1=0.3),
            make_trajectory("t3", True, f1=1.0)]
    examples = list(natk.reformat(data, {}))
    assert [(question_turn(e), e.metadata["label"]) for e in examples] == [
        (f"[Incorrect] {QUESTION}.", "negative"), (f"[Partially Correct] {QUESTION}.", "negative"),
        (f"[Correct] {QUESTION}.", "positive")]
    assert natk.report()["classes"] == {"[Incorrect]": 1, "[Partially Correct]": 1, "[Correct]": 1}


def test_sampling_takes_everything_when_fewer_than_asked(make_trajectory):
    data = [make_trajectory(f"p{i}", True) for i in range(3)] + [make_trajectory(f"n{i}", False) for i in range(2)]
    nat = create("nat", pos_num=10, neg_num=10)
    assert len(list(nat.reformat(data, {}))) == 5
    assert nat.report()["dropped"] == {} and nat.report()["requested"] == {"positive": 10, "negative": 10}
