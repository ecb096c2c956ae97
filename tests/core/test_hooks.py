"""One test per hook (``test_hook_<name>``, as test_hooks_meta.py requires): a plugin implements it and
misstep calls it and uses what it registered."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from click.testing import CliRunner

import misstep
import misstep.testing
from misstep.plugins import Plugins


def plugins_with(plugin: object) -> Plugins:
    plugins = Plugins(entry_points=False)
    plugins.add(plugin, "under-test")
    return plugins


def test_hook_register_tasks():
    class Countdown(misstep.TaskLoader):
        name = "countdown"

        def load(self) -> Iterator[misstep.Task]:
            yield from (misstep.Task(id=str(n), question=f"{n} - 1?", answer=n - 1) for n in (3, 2))

    class Plugin:
        @misstep.hookimpl
        def register_tasks(self, register: misstep.Register) -> None:
            register(Countdown)

    assert [t.answer for t in plugins_with(Plugin()).create("task", "countdown").load()] == [2, 1]


def test_hook_register_sources(tmp_path: Path):
    class Fixed(misstep.TrajectorySource):
        name = "fixed"

        def trajectories(self, ctx: misstep.StageContext) -> Iterator[misstep.Trajectory]:
            yield misstep.Trajectory(id=f"{ctx.name}#0", task_id="t", messages=[])

    class Plugin:
        @misstep.hookimpl
        def register_sources(self, register: misstep.Register) -> None:
            register(Fixed)

    plugins = plugins_with(Plugin())
    ctx = misstep.testing.stage_context(tmp_path, plugins, name="load")
    assert [t.id for t in plugins.create("source", "fixed").trajectories(ctx)] == ["load#0"]


def test_hook_register_tools():
    class Reverse(misstep.Tool):
        name = "reverse"

        def run(self, argument: str) -> str:
            return argument[::-1]

    class Plugin:
        @misstep.hookimpl
        def register_tools(self, register: misstep.Register) -> None:
            register(Reverse)

    assert plugins_with(Plugin()).create("tool", "reverse").run("abc") == "cba"


def test_hook_register_verifiers():
    class Always(misstep.Verifier):
        name = "always"

        def verify(self, task: misstep.Task, prediction: str | None,
                   messages: Sequence[misstep.Message] = ()) -> misstep.Verdict:
            return misstep.Verdict(correct=True, score=1.0, prediction=prediction)

    class Plugin:
        @misstep.hookimpl
        def register_verifiers(self, register: misstep.Register) -> None:
            register(Always)

    verdict = plugins_with(Plugin()).create("verifier", "always").verify(misstep.Task(id="t", question="?"), "x")
    assert verdict.label == "positive"


def test_hook_register_reformatters():
    class Everything(misstep.Reformatter):
        name = "everything"

        def reformat(self, trajectories: Any, tasks: Any) -> Iterator[misstep.Example]:
            yield from (misstep.Example(id=t.id, messages=t.messages, label=t.label) for t in trajectories)

    class Plugin:
        @misstep.hookimpl
        def register_reformatters(self, register: misstep.Register) -> None:
            register(Everything)

    reformatter = plugins_with(Plugin()).create("reformatter", "everything")
    trajectory = misstep.Trajectory(id="t#0", task_id="t", messages=[], verdict=misstep.Verdict(correct=False))
    assert [e.label for e in reformatter.reformat([trajectory], {})] == ["negative"]
    assert reformatter.report() is None  # the declared default: nothing to report


def test_hook_register_losses():
    class Zero(misstep.Loss):
        name = "zero"

    class Plugin:
        @misstep.hookimpl
        def register_losses(self, register: misstep.Register) -> None:
            register(Zero)

    plugins = plugins_with(Plugin())
    assert {"sft", "zero"} <= set(plugins.names("loss"))
    assert misstep.LossRef(use="zero").resolve(plugins).build().name == "zero"


def test_hook_register_backends():
    class Parrot(misstep.Backend):
        name = "parrot"

        def generate(self, conversations: Sequence[Sequence[misstep.Message]],
                     sampling: Sequence[misstep.Sampling]) -> list[str]:
            return [c[-1].content for c in conversations]

    class Plugin:
        @misstep.hookimpl
        def register_backends(self, register: misstep.Register) -> None:
            register(Parrot)

    backend = plugins_with(Plugin()).create("backend", "parrot")
    assert backend.generate([[misstep.Message(role="user", content="hi")]], [misstep.Sampling()]) == ["hi"]


def test_hook_register_stages(tmp_path: Path):
    class Hello(misstep.Stage):
        name = "hello"

        def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
            (ctx.dir / "hello.txt").write_text("hello")
            return {"file": ctx.dir / "hello.txt"}

    class Plugin:
        @misstep.hookimpl
        def register_stages(self, register: misstep.Register) -> None:
            register(Hello)

    recipe = misstep.validate_recipe({"name": "h", "stages": ["hello"]}, plugins=plugins_with(Plugin()))
    run = misstep.run_recipe(recipe, run_dir=tmp_path, quiet=True)
    assert run.output("hello", "file").read_text() == "hello"


def test_hook_register_commands():
    class Plugin:
        @misstep.hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("hello")
            def hello() -> None:
                click.echo("hello")

    group = click.Group()
    plugins_with(Plugin()).register_commands(group)
    assert CliRunner().invoke(group, ["hello"]).output == "hello\n"


class Lifecycle:
    """A stage that produces a trajectory, and a plugin that records the lifecycle hooks around it."""

    class Produce(misstep.Stage):
        name = "produce"

        def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
            ctx.trajectory_produced(misstep.Trajectory(id="t#0", task_id="t", messages=[]))
            return {"count": 1}

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @misstep.hookimpl
    def register_stages(self, register: misstep.Register) -> None:
        register(self.Produce)

    @misstep.hookimpl
    def trajectory_produced(self, trajectory: misstep.Trajectory, ctx: misstep.StageContext) -> None:
        self.events.append(("trajectory", trajectory.id, ctx.name))

    @misstep.hookimpl
    def before_stage(self, ctx: misstep.StageContext) -> None:
        self.events.append(("before", ctx.name, ctx.dir.is_dir()))

    @misstep.hookimpl
    def after_stage(self, ctx: misstep.StageContext, outputs: dict[str, Any]) -> None:
        self.events.append(("after", ctx.name, outputs))

    def run(self, folder: Path) -> list[tuple[Any, ...]]:
        recipe = misstep.validate_recipe({"name": "l", "stages": [{"use": "produce", "name": "p"}]},
                                         plugins=plugins_with(self))
        misstep.run_recipe(recipe, run_dir=folder, quiet=True)
        misstep.run_recipe(recipe, run_dir=folder, quiet=True)  # finished: skipped, no hooks
        return self.events


def test_hook_trajectory_produced(tmp_path: Path):
    assert ("trajectory", "t#0", "p") in Lifecycle().run(tmp_path)


def test_hook_before_stage(tmp_path: Path):
    assert [e for e in Lifecycle().run(tmp_path) if e[0] == "before"] == [("before", "p", True)]


def test_hook_after_stage(tmp_path: Path):
    events = Lifecycle().run(tmp_path)
    assert events[-1] == ("after", "p", {"count": 1}) and events.index(events[-1]) == 2
