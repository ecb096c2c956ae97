"""The hooks a misstep plugin can implement: the whole contract between the core and its plugins.

Registration hooks run once, when a :class:`~misstep.Plugins` registry is first used (at the start
of every ``misstep`` command). Each receives a ``register`` callback; call it with one component class
per component the plugin provides. The component's ``kind`` must match the hook.

Lifecycle hooks run while a recipe executes, for logging, monitoring and side outputs. They observe:
one that raises is warned about and that plugin's lifecycle hooks are not called again, and the run
goes on. A plugin whose registration or command hook raises is left out with a warning.
Implement a hook with ``@misstep.hookimpl`` and a function of the same name; it may take only the
arguments it needs. Type ``register`` as :data:`misstep.Register`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from misstep.components import Component
    from misstep.context import StageContext
    from misstep.datamodel import Trajectory

hookspec = pluggy.HookspecMarker("misstep")
hookimpl = pluggy.HookimplMarker("misstep")

Register = Callable[[type["Component[Any]"]], None]
"""The ``register`` callback of the registration hooks: takes one component class, returns nothing."""


# --- registration: components -------------------------------------------------------------------


@hookspec
def register_tasks(register: Register) -> None:
    """Register task loaders and generators (``TaskLoader`` subclasses).

    Called once when the registry is built.

    :param register: call ``register(cls)`` to add a loader recipes can name with ``use: <cls.name>``.
    :return: ignored.
    """


@hookspec
def register_sources(register: Register) -> None:
    """Register trajectory sources (``TrajectorySource`` subclasses): files, rollouts, candidate pools.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each source class.
    :return: ignored.
    """


@hookspec
def register_tools(register: Register) -> None:
    """Register tools the agent can call (``Tool`` subclasses), by the name used in actions.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each tool class.
    :return: ignored.
    """


@hookspec
def register_verifiers(register: Register) -> None:
    """Register verifiers (``Verifier`` subclasses) that judge answers and produce ``Verdict``s.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each verifier class.
    :return: ignored.
    """


@hookspec
def register_reformatters(register: Register) -> None:
    """Register reformatters (``Reformatter`` subclasses) that turn trajectories into ``Example``s.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each reformatter class.
    :return: ignored.
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register training losses (``Loss`` subclasses); set ``ranked = True`` for ranking losses.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each loss class.
    :return: ignored.
    """


@hookspec
def register_backends(register: Register) -> None:
    """Register generation backends (``Backend`` subclasses) that produce assistant turns.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each backend class.
    :return: ignored.
    """


@hookspec
def register_parsers(register: Register) -> None:
    """Register tool-call parsers (``ToolCallParser`` subclasses) that find native tool calls in a reply's
    text (``<tool_call>{...}</tool_call>``, bare JSON, a model family's own markup).

    Called once when the registry is built. Agents name one with ``tool_parser: <cls.name>``.

    :param register: call it with each parser class.
    :return: ignored.
    """


@hookspec
def register_stages(register: Register) -> None:
    """Register recipe stages (``Stage`` subclasses), such as ``collect``, ``train`` or a method's loop.

    Called once when the registry is built.

    :param register: call ``register(cls)`` with each stage class.
    :return: ignored.
    """


# --- registration: command line -----------------------------------------------------------------


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``misstep`` command line.

    Called once when the CLI starts.

    :param cli: the top-level click group; add commands with ``@cli.command()``.
    :return: ignored.
    """


# --- lifecycle ----------------------------------------------------------------------------------


@hookspec
def trajectory_produced(trajectory: Trajectory, ctx: StageContext) -> None:
    """Called after a stage produced, verified and stored a trajectory (an observer that raises is
    reported and not called again; the trajectory is already safe).

    :param trajectory: the new trajectory; it must not be modified.
    :param ctx: the running stage's context.
    :return: ignored.
    """


@hookspec
def before_stage(ctx: StageContext) -> None:
    """Called just before a recipe stage runs (not for stages skipped because they already finished).

    :param ctx: the stage's context: ``ctx.name`` is its name, ``ctx.dir`` its output folder.
    :return: ignored.
    """


@hookspec
def after_stage(ctx: StageContext, outputs: dict[str, Any]) -> None:
    """Called after a recipe stage finished successfully, with the outputs it returned.

    :param ctx: the stage's context.
    :param outputs: the stage's outputs as saved in the run folder (paths as ``{"path": ...}``).
    :return: ignored.
    """
