import json
from typing import Annotated

import pytest

import misstep
from misstep import Options, Plugins, Stage, StageInput, load_recipe, run_recipe


class Count(Stage):
    """Appends a line to log.txt each time it runs; with `fail_first_time` the first run is interrupted."""

    name = "count"

    class Options(Options):
        value: int = 1
        fail_first_time: bool = False
        after: Annotated[str | None, StageInput()] = None

    def run(self, ctx):
        with (ctx.dir / "log.txt").open("a") as handle:
            handle.write("ran\n")
        if self.options.fail_first_time and (ctx.dir / "log.txt").read_text().count("ran") == 1:
            raise KeyboardInterrupt
        before = ctx.output(self.options.after, "total") if self.options.after else 0
        (ctx.dir / "out.txt").write_text(str(self.options.value))
        return {"file": ctx.dir / "out.txt", "total": before + self.options.value}


class CountPlugin:
    def __init__(self):
        self.events = []

    @misstep.hookimpl
    def register_stages(self, register):
        register(Count)

    @misstep.hookimpl
    def before_stage(self, ctx):
        self.events.append(("before", ctx.name))

    @misstep.hookimpl
    def after_stage(self, ctx, outputs):
        self.events.append(("after", ctx.name, outputs["total"]))


RECIPE = """
name: counting
stages:
  - use: count
    name: first
    value: 2
  - use: count
    name: second
    value: 3
    after: first
"""


@pytest.fixture
def plugins():
    manager = Plugins(entry_points=False)
    manager.add(CountPlugin(), "count-plugin")
    return manager


def runs(path):
    return path.read_text().count("ran")


def test_stages_run_in_order_and_pass_outputs(tmp_path, write_recipe, plugins):
    recipe = load_recipe(write_recipe(RECIPE), plugins=plugins)
    run = run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert run.outputs["second"]["total"] == 5
    assert run.outputs["first"]["file"] == {"path": "first/out.txt"}
    state = json.loads((tmp_path / "run" / "second" / "stage.json").read_text())
    assert state["status"] == "finished" and state["outputs"]["total"] == 5
    assert (tmp_path / "run" / "recipe.yaml").read_text().count("use: count") == 2
    events = plugins.pm.get_plugin("count-plugin").events
    assert events == [("before", "first"), ("after", "first", 2), ("before", "second"), ("after", "second", 5)]


def test_rerun_skips_finished_stages(tmp_path, write_recipe, plugins):
    recipe = load_recipe(write_recipe(RECIPE), plugins=plugins)
    run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    run = run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert runs(tmp_path / "run" / "first" / "log.txt") == 1
    assert runs(tmp_path / "run" / "second" / "log.txt") == 1
    assert run.outputs["second"]["total"] == 5


def test_interrupted_stage_resumes_in_its_folder(tmp_path, write_recipe, plugins):
    recipe = load_recipe(write_recipe(RECIPE), ["stages.second.fail_first_time=true"], plugins=plugins)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, run_dir=tmp_path / "r", plugins=plugins, quiet=True)
    state = json.loads((tmp_path / "r" / "second" / "stage.json").read_text())
    assert state["status"] == "interrupted" and state["error"] is None
    run = run_recipe(recipe, run_dir=tmp_path / "r", plugins=plugins, quiet=True)
    assert runs(tmp_path / "r" / "first" / "log.txt") == 1  # finished stage not redone
    assert runs(tmp_path / "r" / "second" / "log.txt") == 2  # same folder, partial work still there
    assert run.outputs["second"]["total"] == 5


def test_changed_configuration_moves_old_outputs_aside(tmp_path, write_recipe, plugins):
    path = write_recipe(RECIPE)
    run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "r", plugins=plugins, quiet=True)
    run_recipe(load_recipe(path, ["stages.second.value=4"], plugins=plugins), run_dir=tmp_path / "r",
               plugins=plugins, quiet=True)
    assert runs(tmp_path / "r" / "first" / "log.txt") == 1
    assert (tmp_path / "r" / "second.stale-1" / "out.txt").read_text() == "3"
    assert (tmp_path / "r" / "second" / "out.txt").read_text() == "4"


def test_changed_upstream_stage_reruns_downstream(tmp_path, write_recipe, plugins):
    path = write_recipe(RECIPE)
    run_recipe(load_recipe(path, plugins=plugins), run_dir=tmp_path / "r", plugins=plugins, quiet=True)
    run = run_recipe(load_recipe(path, ["stages.first.value=10"], plugins=plugins), run_dir=tmp_path / "r",
                     plugins=plugins, quiet=True)
    assert run.outputs["second"]["total"] == 13
    assert (tmp_path / "r" / "first.stale-1").exists() and (tmp_path / "r" / "second.stale-1").exists()


def test_output_of_unknown_key_is_a_clear_error(tmp_path, write_recipe, plugins):
    recipe = load_recipe(write_recipe(RECIPE), plugins=plugins)
    run = run_recipe(recipe, run_dir=tmp_path / "r", plugins=plugins, quiet=True)
    from misstep.context import StageContext

    ctx = StageContext(run=run, name="third", dir=tmp_path, spec=recipe.stages[0])
    with pytest.raises(misstep.MisstepError, match="has no output 'nope'"):
        ctx.output("first", "nope")
    assert ctx.output("first", "file") == tmp_path / "r" / "first" / "out.txt"


def test_tasks_stage_with_jsonl_loader(tmp_path, write_recipe):
    data = tmp_path / "qs.jsonl"
    data.write_text("\n".join(json.dumps({"q": f"{i}+1?", "a": i + 1}) for i in range(5)) + "\n")
    recipe = load_recipe(write_recipe(f"""
    name: t
    stages:
      - use: tasks
        limit: 3
        shuffle: true
        tasks: {{use: jsonl, path: {data}, question: q, answer: a, id: null}}
    """), plugins=Plugins(entry_points=False))
    run = run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    tasks = list(misstep.read_jsonl(tmp_path / "run" / "tasks" / "tasks.jsonl", misstep.Task))
    assert run.outputs["tasks"]["count"] == 3 and len(tasks) == 3
    assert all(t.answer == int(t.question.split("+")[0]) + 1 for t in tasks)
