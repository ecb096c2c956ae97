"""The plugin manager: loads built-in and entry-point plugins and builds the component registry.

Third-party plugins register in the entry-point group ``misstep``. Environment variables:

- ``MISSTEP_LOAD_PLUGINS=a,b``: load only these entry-point plugins (by entry-point or distribution
  name); an empty value loads none. Built-ins always load unless disabled.
- ``MISSTEP_DISABLE_PLUGINS=a,b``: never load these (built-in or entry-point).
- ``MISSTEP_TRACE_PLUGINS=1``: print every hook call to stderr.

The rest of misstep talks to plugins only through :class:`Plugins` (never ``pm.hook`` directly).
"""

from __future__ import annotations

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

from misstep import hookspecs
from misstep.components import KINDS, Component
from misstep.errors import PluginError

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
    """A plugin could not be loaded; the others still work."""


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


class Plugins:
    """A typed facade over the pluggy manager: loading, the registry and the lifecycle hooks."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("misstep")
        self.pm.add_hookspecs(hookspecs)
        self.failures: dict[str, str] = {}
        self._versions: dict[str, str | None] = {}
        self._builtins: set[str] = set()
        self._registry: dict[str, dict[str, Entry]] | None = None
        if os.environ.get("MISSTEP_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda message: print(message, end="", file=sys.stderr))
            self.pm.enable_tracing()
        disabled = _names_from_env("MISSTEP_DISABLE_PLUGINS") or set()
        for module_name in BUILTINS:
            if module_name not in disabled:
                self.add(importlib.import_module(module_name), module_name, builtin=True)
        if entry_points:
            self._load_entry_points(disabled)
        self.pm.check_pending()

    def add(self, plugin: ModuleType | object, name: str, *, version: str | None = None, builtin: bool = False) -> None:
        """Register a plugin object (a module or instance with hook implementations)."""
        self.pm.register(plugin, name=name)
        self._versions[name] = version
        if builtin:
            self._builtins.add(name)
        self._registry = None

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
            except Exception as error:  # a broken plugin must not take the others down
                self._fail(ep.name, f"{type(error).__name__}: {error}")
                continue
            self.add(plugin, ep.name, version=ep.dist.version if ep.dist else None)

    def _fail(self, name: str, reason: str) -> None:
        self.failures[name] = reason
        warnings.warn(f"misstep plugin {name!r} was not loaded: {reason}", PluginWarning, stacklevel=3)

    # --- registry ---------------------------------------------------------------------------

    @property
    def registry(self) -> dict[str, dict[str, Entry]]:
        """kind -> name -> :class:`Entry`, built on first use by calling every registration hook."""
        if self._registry is None:
            self._registry = self._build_registry()
        return self._registry

    def _build_registry(self) -> dict[str, dict[str, Entry]]:
        registry: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind, hook_name in REGISTRATION_HOOKS.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):
                plugin = impl.plugin_name

                def register(cls: type[Component[Any]], kind: str = kind, plugin: str = plugin) -> None:
                    _check_component(cls, kind, plugin)
                    existing = registry[kind].get(cls.name)
                    if existing is not None and existing.cls is not cls:
                        raise PluginError(
                            f"two plugins register a {kind} named {cls.name!r}: {existing.plugin!r} and "
                            f"{plugin!r}; disable one with MISSTEP_DISABLE_PLUGINS={plugin}"
                        )
                    registry[kind][cls.name] = Entry(cls, plugin)

                if os.environ.get("MISSTEP_TRACE_PLUGINS"):
                    print(f"misstep: {hook_name} -> {plugin}", file=sys.stderr)
                impl.function(**{arg: register for arg in impl.argnames})
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

    # --- lifecycle hooks --------------------------------------------------------------------

    def register_commands(self, cli: click.Group) -> None:
        self.pm.hook.register_commands(cli=cli)

    def trajectory_produced(self, trajectory: Trajectory, ctx: StageContext) -> None:
        self.pm.hook.trajectory_produced(trajectory=trajectory, ctx=ctx)

    def before_stage(self, ctx: StageContext) -> None:
        self.pm.hook.before_stage(ctx=ctx)

    def after_stage(self, ctx: StageContext, outputs: dict[str, Any]) -> None:
        self.pm.hook.after_stage(ctx=ctx, outputs=outputs)


def _check_component(cls: Any, kind: str, plugin: str) -> None:
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"plugin {plugin!r} registered {cls!r} as a {kind}, but it is not a {base.__name__} subclass")
    if not cls.name:
        raise PluginError(f"plugin {plugin!r} registered {cls.__name__} without a name")


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
