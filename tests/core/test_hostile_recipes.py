"""Hostile recipes: every one ends in located problems (file, line, key), never a traceback, in bounded
time and memory; names cannot leave the run folder; missing input files are all reported at validation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from misstep import DataError, Plugins, RecipeError, load_recipe, validate_recipe
from misstep import yamltext
from misstep.cli import cli


def load(path: Path, overrides: tuple[str, ...] = ()) -> object:
    return load_recipe(path, overrides, plugins=Plugins())


def problems(path: Path, overrides: tuple[str, ...] = ()) -> list[tuple[str, int | None, str]]:
    with pytest.raises(RecipeError) as info:
        load(path, overrides)
    return [(p.path, p.line, p.message) for p in info.value.problems]


def laughs(levels: int = 9, width: int = 9) -> str:
    """The billion laughs: ``levels`` anchors, each a list of ``width`` aliases of the one before
    (9 x 9: 387 million strings from about 400 bytes)."""
    lines = ["name: bomb", "l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    lines.append(f"stages: *l{levels - 1}")
    return "\n".join(lines) + "\n"


# --- YAML: refused while loading, with the line -----------------------------------------------------

HOSTILE = {
    "alias bomb": (laughs(), 7, "aliases expand to more than"),  # the first anchor that grows too large
    "long strings repeated": ("name: x\ns: &s '" + "x" * 60_000 + "'\nstages: [" + ", ".join(["*s"] * 100) + "]\n", 3,
                              "aliases expand to more than"),
    "merge bomb": ("name: x\na: &a {k0: 1, k1: 1, k2: 1, k3: 1}\n"
                   + "".join(f"m{i}: &m{i} {{<<: *{'a' if i == 0 else f'm{i - 1}'}, x{i}: [*{'a' if i == 0 else f'm{i - 1}'}, "
                             f"*{'a' if i == 0 else f'm{i - 1}'}, *{'a' if i == 0 else f'm{i - 1}'}]}}\n" for i in range(14))
                   + "stages: [*m13]\n", None, "aliases expand to more than"),
    "recursive alias": ("name: x\nstages: &s\n  - use: tasks\n    tasks: *s\n", 4, "recursive alias"),
    "recursive mapping": ("name: x\nstages:\n  - &t {use: tasks, tasks: {use: jsonl, path: *t}}\n", 3, "recursive alias"),
    "deep nesting": ("name: x\nstages: " + "[" * 3000 + "]" * 3000 + "\n", 2, "nest"),
    "deep through aliases": ("name: x\na: &a " + "[" * 40 + "]" * 40 + "\nb: &b " + "[" * 40 + "*a" + "]" * 40
                             + "\nstages: [*b]\n", None, "deeper than 64 levels once its aliases are expanded"),
    "complex key": ("name: x\nstages:\n  - ? [use, tasks]\n    : tasks\n", 3, "a key must be a plain string or number"),
    "mapping key": ("name: x\nstages: [{? {a: 1} : tasks}]\n", 2, "a key must be a plain string or number"),
    "python object": ("name: !!python/object/apply:os.system ['echo pwned']\nstages: [tasks]\n", 1,
                      "the tag !!python/object/apply:os.system is not allowed"),
    "python name": ("name: x\nstages: [!!python/name:os.system tasks]\n", 2, "the tag !!python/name:os.system is not allowed"),
    "custom tag": ("name: x\nseed: !env SEED\nstages: [tasks]\n", 2, "the tag !env is not allowed"),
    "binary": ("name: x\nseed: !!binary aGk=\nstages: [tasks]\n", 2, "the tag !!binary is not allowed"),
    "syntax": ("name: x\nstages: [\n  - use: tasks\n", 3, "not valid YAML"),
    "two documents": ("name: x\nstages: [tasks]\n---\nname: y\n", 3, "expected a single document"),
    "huge integer": ("name: x\nseed: " + "9" * 5000 + "\nstages: [tasks]\n", 2, "integer"),
    "impossible date": ("name: x\nseed: 2024-13-45\nstages: [tasks]\n", 2, "month must be in 1..12"),
}


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each hostile document goes through both event sources (libyaml when PyYAML has it, and PyYAML's own)."""
    if request.param == "python":
        monkeypatch.setattr(yamltext, "_LOADER", yamltext._PythonLoader)
    return request.param


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_yaml_is_refused_with_its_line(case: str, parser: str, write_recipe) -> None:
    text, line, message = HOSTILE[case]
    found = problems(write_recipe(text))
    assert len(found) == 1
    path, where, text_found = found[0]
    assert message in text_found
    if line is not None:
        assert where == line
    else:
        assert where is not None


def test_duplicate_keys_name_both_lines(write_recipe) -> None:
    found = problems(write_recipe("""
    name: x
    stages:
      - use: tasks
        tasks: {use: jsonl, path: a.jsonl}
        tasks: {use: jsonl, path: b.jsonl}
    seed: 1
    seed: 2
    """))
    assert [(line, message) for _, line, message in found] == [
        (5, "the key 'tasks' appears twice in one mapping (lines 4 and 5); keep one"),
        (7, "the key 'seed' appears twice in one mapping (lines 6 and 7); keep one"),
    ]


def test_merge_keys_and_aliases_still_work(write_recipe, tasks_file) -> None:
    tasks = tasks_file([{"question": "1+1", "answer": 2}])
    recipe = load(write_recipe(f"""
    name: x
    stages:
      - use: tasks
        name: a
        tasks: &base {{use: jsonl, path: {tasks}, limit: 2}}
      - use: tasks
        name: b
        tasks: {{<<: *base, limit: 1}}
    """))
    assert [stage.options.tasks[0].options.limit for stage in recipe.stages] == [2, 1]


def test_refused_yaml_in_a_set_value_and_text_stays_text(write_recipe) -> None:
    path = write_recipe("name: x\nstages: [tasks]\n")
    found = problems(path, ("seed=&a [*a]",))
    assert found == [("seed", None, found[0][2])] and "recursive alias" in found[0][2] and "(set with --set)" in found[0][2]
    found = problems(path, ("seed=!!python/object/apply:os.system [id]",))
    assert "not allowed" in found[0][2] and found[0][1] is None
    found = problems(path, ("name=[unclosed",))  # not YAML: a plain string, then refused as a name
    assert found[0][0] == "name" and "'[unclosed' cannot name a folder" in found[0][2]


def test_not_utf8_is_a_located_error(write_recipe) -> None:
    path = write_recipe("name: x\n")
    path.write_bytes(b"name: x\nstages:\n  - use: t\xe9sks\n")
    with pytest.raises(DataError) as info:
        load(path)
    assert info.value.line == 3 and "not UTF-8" in str(info.value) and str(path) in str(info.value)


def test_a_huge_file_is_refused_before_parsing(write_recipe) -> None:
    path = write_recipe("name: x\nstages: [tasks]\n")
    path.write_text("name: x\n" + "# filler\n" * 40_000)
    found = problems(path)
    assert "too large for a recipe" in found[0][2]


# --- names stay inside the run folder --------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "../..", "../escape", "/tmp/abs", "a/b", "a\\b", ".hidden", "", "x" * 101])
def test_recipe_and_stage_names_are_single_folder_names(name: str, write_recipe) -> None:
    quoted = json.dumps(name)
    found = problems(write_recipe(f"name: {quoted}\nstages:\n  - use: tasks\n    name: {quoted}\n"
                                  "    tasks: {use: arithmetic-word-problems, count: 1}\n"))
    assert {(path, line) for path, line, _ in found} == {("name", 1), ("stages[0].name", 4)}
    assert all("cannot name a folder" in message for _, _, message in found)


def test_a_stage_cannot_be_named_like_a_run_file(write_recipe) -> None:
    found = problems(write_recipe("name: x\nstages:\n  - use: tasks\n    name: recipe.yaml\n"
                                  "    tasks: {use: arithmetic-word-problems, count: 1}\n"))
    assert found == [("stages[0]", 3, "a stage may not be named 'recipe.yaml' (a file of the run folder); give it a "
                                      "`name:`")]


# --- input files: all reported at validation, with their lines -------------------------------------

def test_every_missing_input_file_is_reported_at_once(tmp_path: Path, write_recipe, tasks_file) -> None:
    present = tasks_file([{"question": "1+1", "answer": 2}])
    found = problems(write_recipe(f"""
    name: files
    model: {{path: {tmp_path}/no-model, adapter: no-adapter}}
    stages:
      - use: tasks
        tasks:
          - {{use: jsonl, path: {present}}}
          - {{use: gsm8k, path: missing/gsm8k.jsonl}}
      - use: reformat
        source: {{use: nat-trajectories, paths: [{present}, missing/negative.json]}}
        reformatter: vanilla
      - use: examples
        path: missing/examples.jsonl
      - use: train
        examples: examples
        deepspeed: missing/zero3.json
      - use: evaluate
        model: {{path: missing-model}}
        tasks: {{use: jsonl, path: {present}}}
        tools: [{{use: search, corpus: missing/passages.jsonl}}]
        verifier: numeric
    """))
    missing = {(path, line) for path, line, message in found if "file or folder" in message}
    assert missing == {("model.path", 2), ("model.adapter", 2), ("stages[0].tasks[1].path", 7),
                       ("stages[1].source.paths[1]", 9), ("stages[2].path", 12), ("stages[3].deepspeed", 15),
                       ("stages[4].model.path", 17), ("stages[4].tools[0].corpus", 19)}
    assert len(found) == len(missing)
    assert all(str(tmp_path) in message or "relative to" in message for _, _, message in found)


def test_a_missing_path_shared_through_an_alias_is_reported_once(write_recipe) -> None:
    found = problems(write_recipe("""
    name: shared
    stages:
      - use: tasks
        name: a
        tasks: &missing {use: jsonl, path: missing/tasks.jsonl}
      - use: tasks
        name: b
        tasks: *missing
    """))
    assert [(path, line) for path, line, _ in found] == [("stages[0].tasks.path", 5)]


def test_aliases_presets_stage_outputs_and_the_run_folder_are_not_files(write_recipe, tasks_file) -> None:
    present = tasks_file([{"question": "1+1", "answer": 2}])
    recipe = load(write_recipe(f"""
    name: fine
    model: {{path: tiny}}
    stages:
      - use: tasks
        tasks: {{use: jsonl, path: {present}}}
      - use: student
        corpus: tasks
        model: smollm2-135m-instruct
      - use: examples
        path: runs/fine/reformat/examples.jsonl
      - use: train
        examples: examples
        deepspeed: zero3
      - use: evaluate
        model: train
        tasks: {{use: jsonl, path: {present}}}
        verifier: numeric
    """))
    assert [stage.label for stage in recipe.stages] == ["tasks", "student", "examples", "train", "evaluate"]


def test_file_checks_can_be_left_to_the_run(write_recipe) -> None:
    path = write_recipe("name: x\nstages:\n  - use: tasks\n    tasks: {use: jsonl, path: later.jsonl}\n")
    assert load_recipe(path, plugins=Plugins(), check_files=False).stages[0].use == "tasks"
    with pytest.raises(RecipeError, match="later.jsonl"):
        validate_recipe({"name": "x", "stages": [{"use": "tasks", "tasks": {"use": "jsonl", "path": "later.jsonl"}}]},
                        plugins=Plugins())


# --- the error formatter ---------------------------------------------------------------------------

def test_union_fields_with_a_wrong_type_are_reported(write_recipe) -> None:
    found = problems(write_recipe("""
    name: x
    stages:
      - use: train
        examples: 5
        report_to: 5
        deepspeed: 3
        packing: maybe
    """))
    assert {(path, line) for path, line, _ in found} == {("stages[0].examples", 4), ("stages[0].report_to", 5),
                                                          ("stages[0].deepspeed", 6), ("stages[0].packing", 7)}
    report_to = next(message for path, _, message in found if path == "stages[0].report_to")
    assert report_to == "Input should be a valid string or Input should be a valid list (got 5)"


def test_errors_from_set_are_not_blamed_on_recipe_lines(write_recipe) -> None:
    path = write_recipe("""
    name: x
    stages:
      - use: tasks
        name: t
        tasks: {use: arithmetic-word-problems, count: 3}
    """)
    for assignment, where in [("stages.t.tasks.count=-1", "stages[0].tasks.count"),
                              ("stages.t.tasks=5", "stages[0].tasks"),
                              ("stages.t.tasks.0.count=2", "stages[0].tasks.0"),  # a key the file does not have
                              ("stages.t.name=../up", "stages[0].name"),
                              ("model.path=nowhere", "model.path")]:
        found = problems(path, (assignment,))
        assert [(p, line) for p, line, _ in found] == [(where, None)], assignment
        assert found[0][2].endswith("(set with --set)")


# --- through the command line ----------------------------------------------------------------------

def test_validate_cli_reports_hostile_recipes_with_exit_2(write_recipe) -> None:
    runner = CliRunner()
    for name, (text, line, message) in HOSTILE.items():
        path = write_recipe(text, "hostile.yaml")
        result = runner.invoke(cli, ["validate", str(path)])
        assert result.exit_code == 2, name
        assert isinstance(result.exception, SystemExit), name  # no other exception escaped
        assert message in result.output and f"{path}:" in result.output, name


@pytest.mark.slow
def test_validate_answers_the_worst_alias_bomb_quickly_in_bounded_memory(write_recipe) -> None:
    bomb = write_recipe(laughs(levels=12, width=12), "bomb.yaml")  # 12**12 = 9e12 strings once expanded
    measure = textwrap.dedent("""
        import json, resource, subprocess, sys, time
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "misstep", "validate", sys.argv[1]], capture_output=True,
                              text=True, timeout=120)
        print(json.dumps({"rc": done.returncode, "stderr": done.stderr, "seconds": time.time() - start,
                          "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
    """)
    result = json.loads(subprocess.run([sys.executable, "-c", measure, str(bomb)], capture_output=True, text=True,
                                       check=True).stdout)
    assert result["rc"] == 2 and "Traceback" not in result["stderr"]
    assert f"{bomb}:" in result["stderr"] and "aliases expand to more than" in result["stderr"]
    assert result["seconds"] < 60  # mostly Python start-up and imports; the old loader never finished
    assert result["rss_mb"] < 1024  # the plain command needs about 300 MB
