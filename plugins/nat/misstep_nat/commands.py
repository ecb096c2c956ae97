"""The commands ``misstep quickstart`` (the main job: the packaged quickstart recipe) and ``misstep sweep``."""

from __future__ import annotations

import time
from importlib.resources import as_file, files
from pathlib import Path

import click
import misstep

from misstep_nat.sweep import collect_points, expand, write_report

SET_HELP = "Override a recipe value: KEY.PATH=VALUE (VALUE is YAML). Repeatable; stages by name or index."
QUICKSTART = "quickstart.yaml"
PRETRAINED_LR = 5e-5
"""The learning rate ``--model`` sets: the student built from scratch trains at 6e-3, which would wreck a
pretrained model."""


def quickstart_recipe() -> Path:
    """The packaged quickstart recipe (``recipes/quickstart.yaml`` in the repository links to it)."""
    with as_file(files("misstep_nat") / "recipes" / QUICKSTART) as path:
        return Path(path)


def _values(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give whole numbers separated by commas, e.g. 0,100,200") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter("give at least one number of negatives, none below 0")
    return list(dict.fromkeys(values))


def register(cli: click.Group) -> None:
    """Add ``quickstart`` and ``sweep`` to the ``misstep`` command line."""

    @cli.command("quickstart")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
    @click.option("--model", help="Fine-tune this model instead of a student built from scratch: an alias "
                  f"(smollm2-135m-instruct), a model folder or a .gguf file; trains at learning rate {PRETRAINED_LR:g}.")
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Run folder (default: runs/quickstart). A re-run resumes in it.")
    @click.option("--force", is_flag=True, help="Run every stage again (old outputs are moved aside).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages.")
    def quickstart(overrides: tuple[str, ...], model: str | None, run_dir: Path | None, force: bool,
                   quiet: bool) -> None:
        """Collect, reformat (Vanilla, NUT, NAT), train, evaluate and compare: NAT end to end on a CPU.

        Runs the recipe recipes/quickstart.yaml (shipped with misstep-nat): arithmetic word problems, a
        scripted teacher at temperatures 0.2/0.5/0.7, a small student built from scratch, three trainings
        on the same data, evaluation on held-out problems before and after, a table and a plot.
        """
        started = time.time()
        pretrained = [f"stages.student.model={model}", *(f"stages.train-{method}.learning_rate={PRETRAINED_LR}"
                                                          for method in ("vanilla", "nut", "nat"))]
        sets = [*(pretrained if model else []), *overrides]
        recipe = misstep.load_recipe(quickstart_recipe(), sets, plugins=misstep.get_plugins())
        run = misstep.run_recipe(recipe, run_dir=run_dir, force=force, quiet=quiet)
        click.echo(misstep.read_text(run.output("compare", "table")))
        click.echo(f"Plot: {run.output('compare', 'plot')}")
        click.echo(f"Everything is in {run.dir} ({time.time() - started:.0f} s).")

    @cli.command("sweep")
    @click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path), required=False)
    @click.option("--neg-num", "neg_nums", default="0,100,200,400", show_default=True,
                  help="Numbers of negatives to train with, comma-separated.")
    @click.option("--methods", help="Methods to sweep, comma-separated (default: every chain with negatives: "
                  "nut, nat, nat-k).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Run folder (default: runs/<recipe name>-sweep). A re-run resumes in it.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages.")
    def sweep(recipe: Path | None, neg_nums: str, methods: str | None, overrides: tuple[str, ...],
              run_dir: Path | None, quiet: bool) -> None:
        """Accuracy against the number of negatives, one line per method (NAT's Figure 1).

        RECIPE (default: the quickstart) must hold reformat -> train -> evaluate chains; each chain whose
        reformatter takes neg_num is run once per value. Writes sweep.csv, sweep.md and sweep.png.
        """
        values = _values(neg_nums)
        plugins = misstep.get_plugins()
        base = misstep.load_recipe(recipe or quickstart_recipe(), overrides, plugins=plugins)
        data, points = expand(misstep.dump_recipe(base), values,
                              [m.strip() for m in methods.split(",") if m.strip()] if methods else None)
        data["name"] = f"{base.name}-sweep"
        data["run_dir"] = None  # runs/<name>-sweep unless --run-dir
        expanded = misstep.validate_recipe(data, plugins=plugins, file=f"{recipe or QUICKSTART} (sweep)")
        run = misstep.run_recipe(expanded, run_dir=run_dir, quiet=quiet)
        report = write_report(collect_points(run, points, data), run.dir, f"{base.name}: accuracy vs negatives")
        click.echo(misstep.read_text(report["table"]))
        click.echo(f"CSV: {report['csv']}\nPlot: {report['plot']}")
