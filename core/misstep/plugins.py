"""The plugin manager: loads built-in and entry-point plugins and builds the component registry.

Third-party plugins register in the entry-point group ``misstep``. Environment variables:

- ``MISSTEP_LOAD_PLUGINS=a,b``: load only these entry-point plugins (by entry-point or distribution
  name); an empty value loads none. Built-ins always load unless disabled.
- ``MISSTEP_DISABLE_PLUGINS=a,b``: never load these (built-in or entry-point).
- ``MISSTEP_TRACE_PLUGINS=1``: print every hook call (hook and plugin) to stderr.

The rest of misstep talks to plugins only through :class:`Plugins` (never ``pm.hook`` directly).
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click
import pluggy
from pluggy import HookImpl

from misstep import hookspecs
from misstep.components import KINDS, Component
from misstep.errors import MisstepError, PluginError

if TYPE_CHECKING:
    from misstep.context import StageContext
    from misstep.datamodel import Trajectory

REGISTRATION_HOOKS = {
    "task": "register_tasks",
    "source": "register_sources",
    "tool": "register_tools",
    "verifier": "register_verifiers",
    "reformatter": "register_reformatters",
    "loss": "register_losses",
    "backend": "register_backends",
    "parser": "register_parsers",
    "stage": "register_stages",
}

# Which extra to install when a plugin fails because this top-level module is missing.
EXTRA_FOR_MODULE = {
    "torch": "train",
    "transformers": "train",
    "peft": "train",
    "accelerate": "train",
    "deepspeed": "deepspeed",
    "openai": "openai",
    "gguf": "gguf",
    "sympy": "tools",
    "rank_bm25": "tools",
}


class PluginWarning(UserWarning):
    """A plugin could not be loaded, or one of its hooks failed and was disabled; the others still work."""


class _Failed(Exception):
    """A plugin's hook raised (or registered something wrong) while misstep called it."""

    def __init__(self, plugin: str, reason: str) -> None:
        super().__init__(reason)
        self.plugin = plugin
        self.reason = reason


@dataclass
class Entry:
    """A registered component class and the plugin that registered it."""

    cls: type[Component[Any]]
    plugin: str


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str]
    components: dict[str, list[str]] = field(default_factory=dict)
    builtin: bool = False


BUILTINS = (
    "misstep.builtin.backends",
    "misstep.builtin.collect",
    "misstep.builtin.convert",
    "misstep.builtin.datasets",
    "misstep.builtin.evaluate",
    "misstep.builtin.files",
    "misstep.builtin.losses",
    "misstep.builtin.parsers",
    "misstep.builtin.preference",
    "misstep.builtin.reformatters",
    "misstep.builtin.stages",
    "misstep.builtin.step_credit",
    "misstep.builtin.tool_command",
    "misstep.builtin.train",
    "misstep.builtin.verifiers",
)
"""The built-in plugins, loaded like any other (``MISSTEP_DISABLE_PLUGINS`` blocks them by these names)."""


def _names_from_env(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def install_hint(error: ImportError, distribution: str | None = None) -> str:
    """Say what to install for a failed import, naming the misstep extra where one fits."""
    module = (getattr(error, "name", None) or "").split(".")[0]
    if module in EXTRA_FOR_MODULE:
        return f"install it with: pip install 'misstep[{EXTRA_FOR_MODULE[module]}]'"
    if module:
        return f"install it with: pip install {module}"
    if distribution:
        return f"reinstall it with: pip install --force-reinstall {distribution}"
    return "check the plugin's installation"


def _describe(error: BaseException) -> str:
    """An exception as one line: misstep errors by their message, others by type and message."""
    text = " ".join(str(error).split())
    return text if isinstance(error, MisstepError) else f"{type(error).__name__}: {text}".rstrip(": ")


class Plugins:
    """A typed facade over the pluggy manager: loading, the registry and the hooks.

    Every hook implementation is called by :meth:`_call`, under one guard. A plugin that fails to import,
    implements a hook misstep does not have (or with arguments the hook does not pass), raises in a
    registration hook or registers something wrong is warned about by name and left out; the rest
    works. A lifecycle hook that raises is warned about and that plugin's lifecycle hooks are not called
    again (:attr:`silenced`); the run goes on.
    """

    def __init__(self, *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("misstep")
        self.pm.add_hookspecs(hookspecs)
        self.failures: dict[str, str] = {}
        """Plugins left out, with the reason."""
        self.silenced: dict[str, str] = {}
        """Plugins whose lifecycle hooks failed and are no longer called, with the reason."""
        self._versions: dict[str, str | None] = {}
        self._builtins: set[str] = set()
        self._registry: dict[str, dict[str, Entry]] | None = None
        self._trace = bool(os.environ.get("MISSTEP_TRACE_PLUGINS"))
        disabled = _names_from_env("MISSTEP_DISABLE_PLUGINS") or set()
        for module_name in BUILTINS:
            if module_name not in disabled:
                self.add(importlib.import_module(module_name), module_name, builtin=True)
        if entry_points:
            self._load_entry_points(disabled)

    def add(self, plugin: ModuleType | object, name: str, *, version: str | None = None, builtin: bool = False) -> bool:
        """Register a plugin object (a module or instance with hook implementations); False (with a
        warning) when its hooks do not fit misstep's hook specifications."""
        try:
            self.pm.register(plugin, name=name)
        except Exception as error:  # pluggy's checks of argument names, a name registered twice
            self._fail(name, _describe(error))
            return False
        problem = self._hook_problem(plugin)
        if problem:
            self.pm.unregister(plugin)
            self._fail(name, problem)
            return False
        self._versions[name] = version
        if builtin:
            self._builtins.add(name)
        self._registry = None
        return True

    def _hook_problem(self, plugin: object) -> str | None:
        specs = [name for name, caller in vars(self.pm.hook).items() if getattr(caller, "has_spec", None)
                 and caller.has_spec()]
        for caller in self.pm.get_hookcallers(plugin) or []:
            impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
            if not caller.has_spec() and not all(impl.optionalhook for impl in impls):
                close = difflib.get_close_matches(caller.name, specs, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; misstep's hooks: {', '.join(sorted(specs))}"
                return f"it implements {caller.name!r}, which is not a misstep hook{hint}"
            if any(impl.hookwrapper or impl.wrapper for impl in impls):
                return f"its {caller.name} is a hook wrapper; misstep calls each hook implementation plainly"
        return None

    def _load_entry_points(self, disabled: set[str]) -> None:
        allowed = _names_from_env("MISSTEP_LOAD_PLUGINS")
        seen: set[str] = set()
        for ep in metadata.entry_points(group="misstep"):
            dist = ep.dist.name if ep.dist else None
            names = {ep.name} | ({dist} if dist else set())
            if ep.name in seen or names & disabled or (allowed is not None and not names & allowed):
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
            except ImportError as error:
                self._fail(ep.name, f"{error} ({install_hint(error, dist)})")
                continue
            except (Exception, SystemExit) as error:  # a broken plugin must not take the others down
                self._fail(ep.name, _describe(error))
                continue
            self.add(plugin, ep.name, version=ep.dist.version if ep.dist else None)

    def _fail(self, name: str, reason: str) -> None:
        self.failures[name] = reason
        warnings.warn(f"misstep plugin {name!r} was not loaded: {reason}", PluginWarning, stacklevel=3)

    def _drop(self, name: str, reason: str) -> None:
        """Unregister a loaded plugin that failed, with a warning."""
        self.pm.unregister(name=name)
        self._registry = None
        self._fail(name, reason)

    def _call(self, hook_name: str, impl: HookImpl, kwargs: dict[str, Any]) -> None:
        """Call one hook implementation with the arguments it takes; raise _Failed if it raises."""
        if self._trace:
            print(f"misstep: {hook_name} -> {impl.plugin_name}", file=sys.stderr)
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except PluginError as error:  # it registered something wrong
            raise _Failed(impl.plugin_name, f"{hook_name}: {error}") from error
        except (Exception, SystemExit) as error:  # KeyboardInterrupt still stops misstep
            raise _Failed(impl.plugin_name, f"its {hook_name} hook raised {_describe(error)}") from error

    def _impls(self, hook_name: str) -> list[HookImpl]:
        """The hook's implementations in registration order (built-ins first)."""
        return list(getattr(self.pm.hook, hook_name).get_hookimpls())

    # --- registry ---------------------------------------------------------------------------

    @property
    def registry(self) -> dict[str, dict[str, Entry]]:
        """kind -> name -> :class:`Entry`, built on first use by calling every registration hook; a plugin
        whose registration fails is left out (with a warning) and the registry is built again without it."""
        while self._registry is None:
            try:
                self._registry = self._build_registry()
            except _Failed as failure:
                self._drop(failure.plugin, failure.reason)
        return self._registry

    def _build_registry(self) -> dict[str, dict[str, Entry]]:
        registry: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, hook_name in REGISTRATION_HOOKS.items():
            for impl in self._impls(hook_name):

                def register(cls: type[Component[Any]], kind: str = kind, plugin: str = impl.plugin_name) -> None:
                    _check_component(cls, kind, plugin)
                    existing = registry[kind].get(cls.name)
                    if existing is not None and existing.cls is not cls:
                        raise PluginError(f"it registers a {kind} named {cls.name!r}, as plugin {existing.plugin!r} "
                                          f"does; disable one of them with MISSTEP_DISABLE_PLUGINS")
                    registry[kind][cls.name] = Entry(cls, plugin)

                self._call(hook_name, impl, {"register": register})
        return registry

    def component(self, kind: str, name: str) -> type[Component[Any]]:
        """The component class registered as ``name`` for ``kind``; PluginError lists the choices."""
        entries = self.registry[kind]
        if name not in entries:
            raise PluginError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(entries)) or '(none)'}")
        return entries[name].cls

    def names(self, kind: str) -> list[str]:
        return sorted(self.registry[kind])

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Component[Any]:
        """Instantiate a component with options validated against its ``Options`` model."""
        cls = self.component(kind, name)
        return cls(cls.Options.model_validate(options or {}))

    # --- description ------------------------------------------------------------------------

    def info(self) -> list[PluginInfo]:
        """One :class:`PluginInfo` per loaded plugin, built-ins first."""
        components: dict[str, dict[str, list[str]]] = {}
        for kind, entries in self.registry.items():
            for name, entry in entries.items():
                components.setdefault(entry.plugin, {}).setdefault(kind, []).append(name)
        result = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            result.append(
                PluginInfo(
                    name=name,
                    version=self._versions.get(name),
                    hooks=hooks,
                    components={k: sorted(v) for k, v in sorted(components.get(name, {}).items())},
                    builtin=name in self._builtins,
                )
            )
        result.sort(key=lambda info: (not info.builtin, info.name))
        return result

    # --- command line -----------------------------------------------------------------------

    def register_commands(self, cli: click.Group) -> None:
        """Let each plugin add its commands to ``cli``. A plugin whose hook raises is left out with what it
        added; a command named like one ``cli`` already has (a core command, an earlier plugin's) is
        refused with a warning and the existing one kept."""
        for impl in self._impls("register_commands"):
            before = dict(cli.commands)
            try:
                self._call("register_commands", impl, {"cli": cli})
            except _Failed as failure:
                cli.commands.clear()
                cli.commands.update(before)
                self._drop(failure.plugin, failure.reason)
                continue
            for name, command in before.items():
                if not _same_command(cli.commands.get(name), command):
                    cli.commands[name] = command
                    warnings.warn(f"misstep plugin {impl.plugin_name!r} adds a command {name!r}, which misstep already "
                                  "has; the plugin's command is ignored (the plugin should rename it)", PluginWarning,
                                  stacklevel=2)

    # --- lifecycle hooks --------------------------------------------------------------------

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook's implementations; one that raises is warned about and its plugin's lifecycle
        hooks are not called again (the run goes on)."""
        for impl in self._impls(hook_name):
            if impl.plugin_name in self.silenced:
                continue
            try:
                self._call(hook_name, impl, kwargs)
            except _Failed as failure:
                self.silenced[failure.plugin] = failure.reason
                warnings.warn(f"misstep plugin {failure.plugin!r}: {failure.reason}; its lifecycle hooks are disabled "
                              "for the rest of this run", PluginWarning, stacklevel=3)

    def trajectory_produced(self, trajectory: Trajectory, ctx: StageContext) -> None:
        self._notify("trajectory_produced", trajectory=trajectory, ctx=ctx)

    def before_stage(self, ctx: StageContext) -> None:
        self._notify("before_stage", ctx=ctx)

    def after_stage(self, ctx: StageContext, outputs: dict[str, Any]) -> None:
        self._notify("after_stage", ctx=ctx, outputs=outputs)


def _same_command(new: click.Command | None, old: click.Command) -> bool:
    """Whether ``new`` is ``old`` or the same command defined again (its function has the same module and
    name), as when a plugin's commands are registered twice in one process."""
    if new is old:
        return True
    origins = {(getattr(c, "__module__", None), getattr(c, "__qualname__", None))
               for c in (getattr(new, "callback", None), old.callback)}
    return len(origins) == 1 and (None, None) not in origins


def _check_component(cls: Any, kind: str, plugin: str) -> None:
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"it registered {cls!r} as a {kind}, but that is not a {base.__name__} subclass")
    if not cls.name:
        raise PluginError(f"it registered {cls.__name__} without a name")


_plugins: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin manager, created on first use."""
    global _plugins
    if _plugins is None:
        _plugins = Plugins()
    return _plugins


def reset_plugins() -> None:
    """Forget the process-wide manager (tests use this after changing the environment)."""
    global _plugins
    _plugins = None
