import json
import subprocess
import sys
import warnings

import pytest

import misstep
from misstep.errors import PluginError
from misstep.plugins import BUILTINS, PluginWarning, Plugins

TOOL_PLUGIN = """
import misstep

class Shout(misstep.Tool):
    name = "shout"
    def run(self, argument):
        return argument.upper()

@misstep.hookimpl
def register_tools(register):
    register(Shout)
"""

FIRST_PARTY = {"tools", "nat", "trice", "tripost"}


def entry_point_names(plugins: Plugins) -> set[str]:
    return {info.name for info in plugins.info() if not info.builtin}


def test_builtins_and_first_party_plugins_load():
    plugins = Plugins()
    infos = {info.name: info for info in plugins.info()}
    for module in BUILTINS:
        assert infos[module].builtin
    assert FIRST_PARTY <= set(infos)
    assert "tasks" in plugins.names("stage") and "jsonl" in plugins.names("task")
    assert plugins.failures == {}


def test_every_builtin_module_is_listed():
    import pkgutil

    import misstep.builtin

    modules = {f"misstep.builtin.{m.name}" for m in pkgutil.iter_modules(misstep.builtin.__path__)}
    assert set(BUILTINS) == modules and len(BUILTINS) == len(modules)


def test_third_party_entry_point_is_discovered(installed):
    installed("misstep-shout", "shout", TOOL_PLUGIN)
    plugins = Plugins()
    assert plugins.create("tool", "shout").run("hi") == "HI"
    info = {i.name: i for i in plugins.info()}["shout"]
    assert info.version == "0.1" and info.components == {"tool": ["shout"]} and info.hooks == ["register_tools"]


def test_load_plugins_allow_list(installed, monkeypatch):
    installed("misstep-shout", "shout", TOOL_PLUGIN)
    monkeypatch.setenv("MISSTEP_LOAD_PLUGINS", "shout, misstep-nat")  # entry-point or distribution name
    plugins = Plugins()
    assert entry_point_names(plugins) == {"shout", "nat"}
    assert "tasks" in plugins.names("stage")  # built-ins always load
    monkeypatch.setenv("MISSTEP_LOAD_PLUGINS", "")
    assert entry_point_names(Plugins()) == set()


def test_disable_plugins_blocks_entry_points_and_builtins(installed, monkeypatch):
    installed("misstep-shout", "shout", TOOL_PLUGIN)
    monkeypatch.setenv("MISSTEP_DISABLE_PLUGINS", "shout,misstep.builtin.stages")
    plugins = Plugins()
    assert "shout" not in entry_point_names(plugins)
    assert "tasks" not in plugins.names("stage")
    assert "jsonl" in plugins.names("task")


def test_broken_plugin_warns_by_name_and_others_still_work(installed):
    installed("misstep-broken", "broken", "import missing_dependency_xyz\n")
    installed("misstep-needs-torch", "needs-torch", "raise ModuleNotFoundError('No module named torch', name='torch')\n")
    installed("misstep-shout", "shout", TOOL_PLUGIN)
    with pytest.warns(PluginWarning) as caught:
        plugins = Plugins()
    messages = " ".join(str(w.message) for w in caught)
    assert "'broken'" in messages and "missing_dependency_xyz" in messages
    assert "pip install 'misstep[train]'" in messages
    assert set(plugins.failures) == {"broken", "needs-torch"}
    assert plugins.create("tool", "shout").run("ok") == "OK"


def test_plugin_raising_at_import_is_reported(installed):
    installed("misstep-bad", "bad", "raise RuntimeError('boom')\n")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        plugins = Plugins()
    assert plugins.failures["bad"] == "RuntimeError: boom"


def test_duplicate_component_names_both_plugins():
    class First:
        @misstep.hookimpl
        def register_tools(self, register):
            class A(misstep.Tool):
                name = "dup"
            register(A)

    class Second:
        @misstep.hookimpl
        def register_tools(self, register):
            class B(misstep.Tool):
                name = "dup"
            register(B)

    plugins = Plugins(entry_points=False)
    plugins.add(First(), "first")
    plugins.add(Second(), "second")
    with pytest.warns(PluginWarning, match="'second' was not loaded: register_tools: it registers a tool named 'dup', "
                      "as plugin 'first' does"):
        assert plugins.registry["tool"]["dup"].plugin == "first"
    assert "second" in plugins.failures and plugins.pm.get_plugin("second") is None


def test_wrong_kind_and_missing_name_are_rejected():
    class WrongKind:
        @misstep.hookimpl
        def register_tools(self, register):
            class V(misstep.Verifier):
                name = "v"
            register(V)

    class NoName:
        @misstep.hookimpl
        def register_tools(self, register):
            class T(misstep.Tool):
                pass
            register(T)

    plugins = Plugins(entry_points=False)
    plugins.add(WrongKind(), "wrong")
    plugins.add(NoName(), "no-name")
    with pytest.warns(PluginWarning) as caught:
        assert "jsonl" in plugins.names("task")  # the registry is built without them
    messages = " ".join(str(w.message) for w in caught)
    assert "'wrong' was not loaded: register_tools: it registered" in messages and "not a Tool subclass" in messages
    assert "'no-name' was not loaded: register_tools: it registered T without a name" in messages
    assert set(plugins.failures) == {"wrong", "no-name"}


def test_unknown_component_lists_choices():
    with pytest.raises(PluginError, match="unknown stage 'nope'; choose one of: .*tasks"):
        Plugins(entry_points=False).component("stage", "nope")


def test_plugins_json_cli_lists_builtins_and_first_party():
    out = subprocess.run([sys.executable, "-m", "misstep", "plugins", "--json"], capture_output=True, text=True, check=True)
    payload = json.loads(out.stdout)
    names = {p["name"] for p in payload["plugins"]}
    assert FIRST_PARTY <= names and set(BUILTINS) <= names
    for plugin in payload["plugins"]:
        assert set(plugin) == {"name", "version", "hooks", "components", "builtin"}
