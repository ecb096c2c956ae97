"""Meta-tests (as in datasette): every hook is documented, in its docstring and in docs/, and exercised."""

import inspect
import re
from pathlib import Path

import click
import pytest

import misstep
from misstep import hookspecs
from misstep.plugins import REGISTRATION_HOOKS, Plugins

DOCS = Path(__file__).resolve().parents[2] / "docs"
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "misstep_spec"))


def test_hook_list_is_complete():
    assert set(REGISTRATION_HOOKS.values()) <= set(HOOKS)
    assert {"register_commands", "trajectory_produced", "before_stage", "after_stage"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docstring_says_when_and_what_return_means(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert re.search(r"\bCalled\b", doc), f"{hook}: say when it is called"
    assert "return" in doc.lower(), f"{hook}: say what its return value means"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_docs(hook):
    text = (DOCS / "hooks.md").read_text()
    assert re.search(rf"^## `?{hook}\(", text, re.MULTILINE), f"docs/hooks.md lacks a section for {hook}"


class Everything:
    """A plugin implementing every hook, recording which were called."""

    def __init__(self):
        self.called = set()

    def _register(self, hook, register, base):
        self.called.add(hook)
        register(type(f"Meta{base.__name__}", (base,), {"name": f"meta-{base.kind}"}))

    @misstep.hookimpl
    def register_tasks(self, register):
        self._register("register_tasks", register, misstep.TaskLoader)

    @misstep.hookimpl
    def register_sources(self, register):
        self._register("register_sources", register, misstep.TrajectorySource)

    @misstep.hookimpl
    def register_tools(self, register):
        self._register("register_tools", register, misstep.Tool)

    @misstep.hookimpl
    def register_verifiers(self, register):
        self._register("register_verifiers", register, misstep.Verifier)

    @misstep.hookimpl
    def register_reformatters(self, register):
        self._register("register_reformatters", register, misstep.Reformatter)

    @misstep.hookimpl
    def register_losses(self, register):
        self._register("register_losses", register, misstep.Loss)

    @misstep.hookimpl
    def register_backends(self, register):
        self._register("register_backends", register, misstep.Backend)

    @misstep.hookimpl
    def register_parsers(self, register):
        self._register("register_parsers", register, misstep.ToolCallParser)

    @misstep.hookimpl
    def register_stages(self, register):
        self.called.add("register_stages")

        class Produce(misstep.Stage):
            name = "meta-stage"

            def run(self, ctx):
                trajectory = misstep.Trajectory(id="t#0", task_id="t", messages=[])
                ctx.trajectory_produced(trajectory)
                return {"count": 1}

        register(Produce)

    @misstep.hookimpl
    def register_commands(self, cli):
        self.called.add("register_commands")

        @cli.command("meta-hello")
        def hello():
            click.echo("hello")

    @misstep.hookimpl
    def trajectory_produced(self, trajectory, ctx):
        self.called.add("trajectory_produced")
        assert trajectory.id == "t#0" and ctx.name == "meta-stage"

    @misstep.hookimpl
    def before_stage(self, ctx):
        self.called.add("before_stage")

    @misstep.hookimpl
    def after_stage(self, ctx, outputs):
        self.called.add("after_stage")
        assert outputs == {"count": 1}


def test_every_hook_is_exercised(tmp_path, write_recipe):
    plugin = Everything()
    plugins = Plugins(entry_points=False)
    plugins.add(plugin, "everything")
    for kind in REGISTRATION_HOOKS:
        assert f"meta-{kind}" in plugins.names(kind)
    group = click.Group()
    plugins.register_commands(group)
    assert "meta-hello" in group.commands
    recipe = misstep.load_recipe(write_recipe("name: meta\nstages:\n  - use: meta-stage\n"), plugins=plugins)
    misstep.run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert plugin.called == set(HOOKS)
