"""``misstep tool NAME ARGUMENT``: run one tool call from the command line and print the observation.

For debugging prompts and tools: the tool is built and called exactly as inside the agent loop (same
options, same "Error: ..." observation when a tool fails), e.g. ``misstep tool calculate "48/2 + 48"``.
ARGUMENT is text even when it starts with a minus (``misstep tool calculate "-1+2"``).
"""

from __future__ import annotations

import click
import yaml

from misstep.agent.loop import observe
from misstep.errors import ComponentError, RecipeError
from misstep.hookspecs import hookimpl
from misstep.plugins import get_plugins
from misstep.recipe import ToolRef


def tool_options(pairs: tuple[str, ...]) -> dict[str, object]:
    """``KEY=VALUE`` pairs as options; each VALUE is read as YAML (numbers, booleans, lists)."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            options[key.strip()] = value
    return options


@hookimpl
def register_commands(cli: click.Group) -> None:
    # the argument is text: "-1+2" is an expression, not an unknown option
    @cli.command("tool", context_settings={"ignore_unknown_options": True})
    @click.argument("name")
    @click.argument("argument")
    @click.option("--option", "-o", "pairs", multiple=True, metavar="KEY=VALUE",
                  help="A tool option, VALUE in YAML (e.g. -o corpus=passages.jsonl). Repeatable.")
    def tool_command(name: str, argument: str, pairs: tuple[str, ...]) -> None:
        """Run the tool NAME on ARGUMENT (as in NAME[ARGUMENT]) and print the observation.

        `misstep plugins` lists the tools; `misstep describe NAME` their options.
        """
        try:
            ref = ToolRef(use=name, **tool_options(pairs)).resolve(get_plugins())
        except RecipeError as error:
            raise ComponentError(RecipeError(error.problems, file=f"misstep tool {name}").render()) from None
        click.echo(observe(ref.build(), argument))
