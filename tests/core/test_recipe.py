import subprocess
import sys

import pytest

from misstep import Plugins, RecipeError, load_recipe
from misstep.recipe import recipe_to_yaml


def load(path, overrides=()):
    return load_recipe(path, overrides, plugins=Plugins(entry_points=False))


@pytest.fixture(autouse=True)
def _in_a_folder_with_tasks(tmp_path, monkeypatch):
    """Recipes name `tasks.jsonl` relative to the current folder, as users' recipes do."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.jsonl").write_text('{"question": "1+1", "answer": 2}\n')

GOOD = """
name: demo
stages:
  - use: tasks
    name: load
    tasks:
      use: jsonl
      path: tasks.jsonl
      limit: 3
"""

BROKEN = """
name: demo
seed: abc
stages:
  - use: taskz
  - use: tasks
    tasks:
      - use: jsonl
        path: x.jsonl
        limt: 3
"""


def test_valid_recipe_resolves_components(write_recipe):
    recipe = load(write_recipe(GOOD))
    stage = recipe.stages[0]
    assert stage.label == "load"
    loader = stage.options.tasks[0]
    assert loader.options.limit == 3
    assert type(loader.build()).name == "jsonl"
    assert "limit: 3" in recipe_to_yaml(recipe) and "question: question" in recipe_to_yaml(recipe)


def test_every_problem_is_reported_with_path_and_line(write_recipe):
    with pytest.raises(RecipeError) as info:
        load(write_recipe(BROKEN))
    problems = {(p.path, p.line) for p in info.value.problems}
    assert problems == {("seed", 2), ("stages[0].use", 4), ("stages[1].tasks[0].limt", 9)}
    text = str(info.value)
    assert "unknown stage 'taskz'; choose one of:" in text and "reformat" in text and "tasks" in text
    assert "unknown key 'limt'; valid keys:" in text and "limit" in text
    assert "valid integer" in text and "'abc'" in text


def test_missing_required_and_yaml_syntax_errors(write_recipe):
    with pytest.raises(RecipeError, match=r"stages\[0\].tasks: required key is missing"):
        load(write_recipe("name: x\nstages:\n  - use: tasks\n"))
    with pytest.raises(RecipeError) as info:
        load(write_recipe("name: x\nstages: [\n  - use: tasks\n"))
    assert info.value.problems[0].line == 3 and "not valid YAML" in str(info.value)
    with pytest.raises(RecipeError, match="must be a mapping"):
        load(write_recipe("- just a list\n"))


def test_set_overrides_by_stage_name_and_index(write_recipe):
    path = write_recipe(GOOD)
    recipe = load(path, ["stages.load.tasks.limit=7", "seed=5", "stages.0.tasks.dataset=toy"])
    assert recipe.seed == 5
    assert recipe.stages[0].options.tasks[0].options.limit == 7
    assert recipe.stages[0].options.tasks[0].options.dataset == "toy"
    recipe = load(path, ["model.path=smollm2-135m-instruct"])
    assert recipe.model.path == "smollm2-135m-instruct"


def test_bad_overrides_are_located(write_recipe):
    path = write_recipe(BROKEN.replace("seed: abc", "seed: 1").replace("taskz", "tasks\n    tasks: [jsonl]"))
    with pytest.raises(RecipeError, match=r"limit: .*valid integer.*\(set with --set\)"):
        load(path, ["stages.1.tasks.0.limt=many", "stages.1.tasks.0.limit=many", "stages.0.tasks.0.path=a"])
    path = write_recipe(GOOD)
    with pytest.raises(RecipeError, match="no element 'train'; choose one of: load"):
        load(path, ["stages.train.epochs=1"])
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        load(path, ["seed"])


def test_duplicate_stage_names_and_unknown_earlier_stage(write_recipe):
    text = """
    name: x
    stages:
      - use: tasks
        tasks: {use: jsonl, path: a.jsonl}
      - use: tasks
        tasks: {use: jsonl, path: b.jsonl}
      - use: reformat
        trajectories: later
        reformatter: nat
    """
    with pytest.raises(RecipeError) as info:
        load(write_recipe(text))
    text = str(info.value)
    assert "two stages are named 'tasks'" in text
    assert "'later' is not an earlier stage; choose one of: tasks" in text


def test_validate_cli_prints_problems_without_traceback(write_recipe):
    path = write_recipe(BROKEN)
    result = subprocess.run([sys.executable, "-m", "misstep", "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert [line.split(":")[1] for line in lines] == ["2", "4", "9"]
    ok = subprocess.run([sys.executable, "-m", "misstep", "validate", str(write_recipe(GOOD, "good.yaml"))],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout
