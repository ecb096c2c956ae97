"""The ``misstep`` command line. Plugins add subcommands through the ``register_commands`` hook."""

from __future__ import annotations

import json
import re
import sys
import typing
from dataclasses import asdict
from pathlib import Path
from typing import NoReturn

import click

from misstep.components import KINDS
from misstep.errors import MisstepError, RecipeError
from misstep.plugins import get_plugins
from misstep.recipe import default_run_dir, load_recipe
from misstep.runner import run_recipe
from misstep.scaffold import SCAFFOLD_KINDS, scaffold_plugin

SET_HELP = "Override a recipe value: KEY.PATH=VALUE (VALUE is YAML). Repeatable; stages by name or index."


def report(error: MisstepError) -> NoReturn:
    """Print a misstep error as the user should see it (no traceback) and exit with status 2."""
    text = str(error)
    if isinstance(error, RecipeError):
        count = len(error.problems)
        text = f"{count} problem{'s' if count > 1 else ''} in the recipe:\n{text}"
    click.secho(f"Error: {text}", fg="red", err=True)
    sys.exit(2)


class Cli(click.Group):
    """Turns misstep errors and Ctrl-C into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MisstepError as error:
            report(error)
        except KeyboardInterrupt:
            click.secho("Interrupted. Finished work is saved; run the same command again to resume.", err=True)
            sys.exit(130)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="misstep")
def cli() -> None:
    """misstep: failure-aware fine-tuning of LLM agents.

    Write a recipe (YAML) that collects trajectories, reformats them with a method such as NAT,
    trains and evaluates; then `misstep run recipe.yaml`. `misstep plugins` lists what is installed.
    """


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), help="Run folder (default: runs/<name>).")
@click.option("--force", is_flag=True, help="Run every stage again (old outputs are moved aside, not deleted).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages.")
def run(recipe: Path, overrides: tuple[str, ...], run_dir: Path | None, force: bool, quiet: bool) -> None:
    """Run RECIPE's stages in order; a re-run skips stages that already finished."""
    loaded = load_recipe(recipe, overrides, plugins=get_plugins())
    result = run_recipe(loaded, run_dir=run_dir, force=force, quiet=quiet)
    click.echo(f"Run finished: {result.dir}")


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def validate(recipe: Path, overrides: tuple[str, ...]) -> None:
    """Check RECIPE without running it: every problem is listed with its YAML path and line."""
    loaded = load_recipe(recipe, overrides, plugins=get_plugins())
    stages = ", ".join(f"{s.label} ({s.use})" for s in loaded.stages)
    click.echo(f"{recipe}: valid. Stages: {stages}. Run folder: {default_run_dir(loaded)}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins, the hooks they implement and the components they register."""
    manager = get_plugins()
    infos = manager.info()
    if as_json:
        payload = {"plugins": [asdict(info) for info in infos], "failed": manager.failures}
        click.echo(json.dumps(payload, indent=2))
        return
    rows = [("plugin", "version", "components")]
    for info in infos:
        parts = [f"{kind}: {', '.join(names)}" for kind, names in info.components.items()]
        version = info.version or ("built-in" if info.builtin else "")
        rows.append((info.name, version, "; ".join(parts) or "(hooks: " + ", ".join(info.hooks) + ")"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
    for name, reason in manager.failures.items():
        click.secho(f"not loaded: {name}: {reason}", fg="yellow", err=True)


@cli.command()
@click.argument("name")
@click.option("--kind", type=click.Choice(sorted(KINDS)), help="Needed when several kinds use NAME.")
def describe(name: str, kind: str | None) -> None:
    """Show a component's recipe options: type, default and meaning of each key."""
    manager = get_plugins()
    kinds = [kind] if kind else [k for k in KINDS if name in manager.registry[k]]
    if not kinds:
        every = sorted({n for entries in manager.registry.values() for n in entries})
        raise MisstepError(f"no component named {name!r}; installed: {', '.join(every)}")
    if len(kinds) > 1:
        raise MisstepError(f"{name!r} is a {' and a '.join(kinds)}; add --kind")
    entry = manager.registry[kinds[0]][name]
    click.echo(f"{kinds[0]} {name!r} (plugin {entry.plugin}): {entry.cls.describe()}")
    fields = entry.cls.Options.model_fields
    if not fields:
        click.echo("  (no options)")
    for key, info in fields.items():
        default = "required" if info.is_required() else f"default {info.get_default(call_default_factory=True)!r}"
        kind_text = _type_name(info.annotation)
        click.echo(f"  {key}: {kind_text} ({default})" + (f"\n      {info.description}" if info.description else ""))


def _type_name(annotation: object) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", str(annotation)).replace("NoneType", "None")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(SCAFFOLD_KINDS)), default="tool", show_default=True,
              help="The kind of component the plugin holds.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where to create the plugin folder.")
def new_plugin(name: str, kind: str, directory: Path) -> None:
    """Scaffold a plugin distribution NAME: pyproject with entry point, one working component of KIND and
    a test that passes as generated."""
    folder = scaffold_plugin(name, directory, kind)
    click.echo(f"Created {folder}. Next: pip install -e {folder} && misstep plugins")


def main() -> None:
    import warnings

    from misstep.plugins import PluginWarning

    warnings.simplefilter("default", PluginWarning)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"Warning: {message}\n"
    try:
        get_plugins().register_commands(cli)
    except MisstepError as error:
        report(error)
    cli()
