"""Hostile plugins: one whose hooks do not fit or raise is warned about by name and left out (every
command, --help included, keeps working); a lifecycle hook that raises is reported and disabled, never
fatal to the run or its data; a plugin command cannot replace a core command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
from click.testing import CliRunner

import misstep
from misstep import Plugins, load_recipe, run_recipe
from misstep.plugins import PluginWarning

SHOUT = """
import misstep

class Shout(misstep.Tool):
    name = "shout"
    def run(self, argument):
        return argument.upper()

@misstep.hookimpl
def register_tools(register):
    register(Shout)
"""

BROKEN = {
    "raises": ("@misstep.hookimpl\ndef register_tools(register):\n    raise RuntimeError('boom')\n",
               "its register_tools hook raised RuntimeError: boom"),
    "exits": ("@misstep.hookimpl\ndef register_stages(register):\n    raise SystemExit(3)\n",
              "its register_stages hook raised SystemExit: 3"),
    "typo": ("@misstep.hookimpl\ndef register_tool(register):\n    pass\n",
             "it implements 'register_tool', which is not a misstep hook (did you mean 'register_tools'?)"),
    "wrong-args": ("@misstep.hookimpl\ndef register_tools(registry):\n    pass\n",
                   "Argument(s) {'registry'} are declared in the hookimpl but can not be found in the hookspec"),
    "wrapper": ("@misstep.hookimpl(wrapper=True)\ndef before_stage(ctx):\n    return (yield)\n",
                "its before_stage is a hook wrapper"),
    "bad-command": ("@misstep.hookimpl\ndef register_commands(cli):\n"
                    "    @cli.command('half-added')\n    def half():\n        pass\n"
                    "    raise ValueError('no commands today')\n",
                    "its register_commands hook raised ValueError: no commands today"),
}


def plugin_module(name: str) -> ModuleType:
    """One of BROKEN as a plugin module."""
    module = ModuleType(f"misstep_{name}")
    exec("import misstep\n" + BROKEN[name][0], module.__dict__)
    return module


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_plugin_is_warned_about_and_left_out(name: str) -> None:
    plugins = Plugins(entry_points=False)
    with pytest.warns(PluginWarning) as caught:
        plugins.add(plugin_module(name), name)
        assert "jsonl" in plugins.names("task")  # the registry builds without it
        plugins.register_commands(click.Group())
    reason = BROKEN[name][1]
    assert any(f"misstep plugin {name!r} was not loaded" in str(w.message) and reason in str(w.message) for w in caught)
    assert reason in plugins.failures[name]
    assert plugins.pm.get_plugin(name) is None
    assert name not in {info.name for info in plugins.info()}


def test_what_a_failing_plugin_registered_is_dropped_with_it() -> None:
    class Half:
        @misstep.hookimpl
        def register_tools(self, register: misstep.Register) -> None:
            class Echo(misstep.Tool):
                name = "echo"
            register(Echo)

        @misstep.hookimpl
        def register_stages(self, register: misstep.Register) -> None:
            raise RuntimeError("stages are broken")

    plugins = Plugins(entry_points=False)
    plugins.add(Half(), "half")
    with pytest.warns(PluginWarning, match="'half' was not loaded: its register_stages hook raised RuntimeError"):
        assert "echo" not in plugins.names("tool")
    group = click.Group()
    with pytest.warns(PluginWarning, match="'bad-command'"):
        plugins.add(plugin_module("bad-command"), "bad-command")
        plugins.register_commands(group)
    assert "half-added" not in group.commands  # the command it added before raising is gone too


def test_a_plugin_command_cannot_replace_a_core_command() -> None:
    class Clash:
        @misstep.hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("validate")
            def hijacked() -> None:
                click.echo("hijacked")

            @cli.command("extra")
            def extra() -> None:
                click.echo("extra")

    group = click.Group()

    @group.command("validate")
    def validate() -> None:
        click.echo("core")

    plugins = Plugins(entry_points=False)
    plugins.add(Clash(), "clash")
    with pytest.warns(PluginWarning, match="'clash' adds a command 'validate', which misstep already has"):
        plugins.register_commands(group)
    assert CliRunner().invoke(group, ["validate"]).output == "core\n"
    assert CliRunner().invoke(group, ["extra"]).output == "extra\n"  # its other commands stay
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Plugins(entry_points=False).register_commands(group)  # the same commands again (one process, two CLIs)
        Plugins(entry_points=False).register_commands(group)


@pytest.mark.slow
def test_every_command_keeps_working_with_broken_plugins_installed(installed, tmp_path: Path) -> None:
    for name, (source, _) in BROKEN.items():
        site = installed(f"misstep-{name}", name, "import misstep\n" + source)
    installed("misstep-clash", "clash", "import misstep\n@misstep.hookimpl\ndef register_commands(cli):\n"
              "    @cli.command('run')\n    def run():\n        print('hijacked')\n")
    installed("misstep-shout", "shout", SHOUT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def misstep_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "misstep", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path)

    helped = misstep_cli("--help")  # loads the plugins and their commands, not the registry
    assert helped.returncode == 0 and "validate" in helped.stdout and "Traceback" not in helped.stderr
    for name in ["typo", "wrong-args", "wrapper", "bad-command", "clash"]:
        assert f"'{name}'" in helped.stderr
    listed = misstep_cli("plugins", "--json")  # builds the registry: the rest fail there
    payload = json.loads(listed.stdout)
    assert set(BROKEN) == set(payload["failed"]) and "Traceback" not in listed.stderr
    assert {"shout", "clash"} <= {p["name"] for p in payload["plugins"]}
    ran = misstep_cli("run", "--help")
    assert ran.returncode == 0 and "hijacked" not in ran.stdout and "RECIPE" in ran.stdout


# --- lifecycle hooks --------------------------------------------------------------------------------

class Produce(misstep.Stage):
    """Produces three trajectories through the collect machinery's store, announcing each."""

    name = "produce"

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        appender = misstep.JsonlAppender(ctx.dir / "trajectories.jsonl")
        try:
            for number in range(3):
                trajectory = misstep.Trajectory(id=f"t#{number}", task_id="t", messages=[])
                appender.write(trajectory)
                ctx.trajectory_produced(trajectory)
        finally:
            appender.close()
        return {"trajectories": ctx.dir / "trajectories.jsonl"}


class Faulty:
    """An observer whose chosen lifecycle hook raises (or exits); counts every call it gets."""

    def __init__(self, failing: str, error: BaseException) -> None:
        self.failing = failing
        self.error = error
        self.calls: list[str] = []

    def _seen(self, hook: str) -> None:
        self.calls.append(hook)
        if hook == self.failing:
            raise self.error

    @misstep.hookimpl
    def register_stages(self, register: misstep.Register) -> None:
        register(Produce)

    @misstep.hookimpl
    def before_stage(self, ctx: misstep.StageContext) -> None:
        self._seen("before_stage")

    @misstep.hookimpl
    def trajectory_produced(self, trajectory: misstep.Trajectory, ctx: misstep.StageContext) -> None:
        self._seen("trajectory_produced")

    @misstep.hookimpl
    def after_stage(self, ctx: misstep.StageContext, outputs: dict[str, Any]) -> None:
        self._seen("after_stage")


class Recorder:
    """A well-behaved observer: it keeps being called when another one fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @misstep.hookimpl
    def trajectory_produced(self, trajectory: misstep.Trajectory, ctx: misstep.StageContext) -> None:
        self.calls.append(trajectory.id)


@pytest.mark.parametrize("failing", ["before_stage", "trajectory_produced", "after_stage"])
@pytest.mark.parametrize("error", [RuntimeError("observer bug"), SystemExit(1)], ids=["raises", "exits"])
def test_a_failing_observer_is_reported_and_disabled_and_the_run_goes_on(failing: str, error: BaseException,
                                                                          tmp_path: Path) -> None:
    faulty, recorder = Faulty(failing, error), Recorder()
    plugins = Plugins(entry_points=False)
    plugins.add(faulty, "faulty")
    plugins.add(recorder, "recorder")
    recipe = misstep.validate_recipe({"name": "obs", "stages": [{"use": "produce", "name": "p"}]}, plugins=plugins)
    with pytest.warns(PluginWarning, match=f"'faulty': its {failing} hook raised .*lifecycle hooks are disabled"):
        run = run_recipe(recipe, run_dir=tmp_path, quiet=True)
    stored = list(misstep.read_jsonl(run.output("p", "trajectories"), misstep.Trajectory))
    assert [t.id for t in stored] == ["t#0", "t#1", "t#2"]  # nothing lost
    assert recorder.calls == ["t#0", "t#1", "t#2"]  # the other observer saw everything
    assert faulty.calls.count(failing) == 1 and faulty.calls[-1] == failing  # called once, then never again
    assert json.loads((tmp_path / "p" / "stage.json").read_text())["status"] == "finished"
    assert "faulty" in plugins.silenced


def test_an_interrupt_in_an_observer_still_stops_the_run_after_storing(tmp_path: Path) -> None:
    faulty = Faulty("trajectory_produced", KeyboardInterrupt())
    plugins = Plugins(entry_points=False)
    plugins.add(faulty, "faulty")
    recipe = misstep.validate_recipe({"name": "obs", "stages": [{"use": "produce", "name": "p"}]}, plugins=plugins)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, run_dir=tmp_path, quiet=True)
    assert len(list(misstep.read_jsonl(tmp_path / "p" / "trajectories.jsonl", misstep.Trajectory))) == 1
    assert json.loads((tmp_path / "p" / "stage.json").read_text())["status"] == "interrupted"


def test_a_failing_stage_is_marked_failed_with_its_error(tmp_path: Path, write_recipe) -> None:
    class Fails(misstep.Stage):
        """Fails the first time; the second time it finds what the first wrote and finishes."""

        name = "fails"

        def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
            if not (ctx.dir / "tried").exists():
                (ctx.dir / "tried").touch()
                raise misstep.ComponentError("the tool server is down")
            return {"retried": True}

    class Plugin:
        @misstep.hookimpl
        def register_stages(self, register: misstep.Register) -> None:
            register(Fails)

    plugins = Plugins(entry_points=False)
    plugins.add(Plugin(), "fails")
    recipe = load_recipe(write_recipe("name: f\nstages: [fails]\n"), plugins=plugins)
    with pytest.raises(misstep.ComponentError):
        run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    state = json.loads((tmp_path / "run" / "fails" / "stage.json").read_text())
    assert state["status"] == "failed" and state["error"] == "ComponentError: the tool server is down"
    assert run_recipe(recipe, run_dir=tmp_path / "run", quiet=True).output("fails", "retried") is True
