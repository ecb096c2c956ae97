"""The commands ``misstep quickstart`` (the main job: the packaged quickstart recipe) and ``misstep sweep``."""

from __future__ import annotations

import time
from importlib.resources import as_file, files
from pathlib import Path

import click
import misstep

from misstep_nat.sweep import chain_points, collect_points, expand, seeded, write_report

SET_HELP = "Override a recipe value: KEY.PATH=VALUE (VALUE is YAML). Repeatable; stages by name or index."
QUICKSTART = "quickstart.yaml"
DEFAULT_NEG_NUMS = "0,100,200,400"
METHODS = ("vanilla", "nut", "nat")
PRETRAINED = [
    "model.dtype=auto",  # bf16 autocast where the CPU or GPU computes it natively, else float32
    "model.lora={r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}",
    *(f"stages.train-{method}.{key}={value}" for method in METHODS
      for key, value in (("learning_rate", 5e-4), ("max_steps", 40), ("batch_size", 8), ("packing", "true"))),
]
"""What ``--model`` sets besides the model: LoRA on every linear layer at a learning rate for LoRA (the
student built from scratch trains all its weights at 3e-3, which would wreck a pretrained model), fewer and
smaller steps (a pretrained model learns the format sooner; each step costs far more on a CPU), packed rows
and the machine's native precision."""


def quickstart_recipe() -> Path:
    """The packaged quickstart recipe (``recipes/quickstart.yaml`` in the repository links to it)."""
    with as_file(files("misstep_nat") / "recipes" / QUICKSTART) as path:
        return Path(path)


def _numbers(text: str, what: str) -> list[int]:
    """Whole numbers >= 0 separated by commas (duplicates dropped); a bad list is a usage error."""
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give {what} as whole numbers separated by commas, e.g. 0,1,2") from None
    if not values or any(v < 0 for v in values):
        raise click.BadParameter(f"give at least one of the {what}, none below 0")
    return list(dict.fromkeys(values))


def register(cli: click.Group) -> None:
    """Add ``quickstart`` and ``sweep`` to the ``misstep`` command line."""

    @cli.command("quickstart")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
    @click.option("--model", help="Fine-tune this model instead of a student built from scratch: an alias "
                  "(smollm2-135m-instruct), a model folder or a .gguf file; trains a LoRA adapter (all linear "
                  "layers, learning rate 5e-4, 40 steps of 8, packed, bf16 where native).")
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
        sets = [*([f"stages.student.model={model}", *PRETRAINED] if model else []), *overrides]
        recipe = misstep.load_recipe(quickstart_recipe(), sets, plugins=misstep.get_plugins())
        run = misstep.run_recipe(recipe, run_dir=run_dir, force=force, quiet=quiet)
        click.echo(misstep.read_text(run.output("compare", "table")))
        click.echo(f"Plot: {run.output('compare', 'plot')}")
        click.echo(f"Everything is in {run.dir} ({time.time() - started:.0f} s).")

    @cli.command("sweep")
    @click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path), required=False)
    @click.option("--neg-num", "neg_nums", help=f"Numbers of negatives to train with, comma-separated (default "
                  f"{DEFAULT_NEG_NUMS} unless --seeds is given alone: then the recipe's own).")
    @click.option("--seeds", help="Repeat every method's training and evaluation with these seeds, comma-separated "
                  "(e.g. 0,1,2); the report gives the mean and spread.")
    @click.option("--methods", help="Methods to sweep over --neg-num, comma-separated (default: every chain with "
                  "negatives: nut, nat, nat-k).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
    @click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
                  help="Run folder (default: runs/<recipe name>-sweep). A re-run resumes in it.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bars or stage messages.")
    def sweep(recipe: Path | None, neg_nums: str | None, seeds: str | None, methods: str | None,
              overrides: tuple[str, ...], run_dir: Path | None, quiet: bool) -> None:
        """Accuracy against the number of negatives, one line per method (NAT's Figure 1), over seeds.

        RECIPE (default: the quickstart) must hold reformat -> train -> evaluate chains. Each chain whose
        reformatter takes neg_num is run once per --neg-num value; with --seeds every chain (and its compare
        stage) is repeated per seed. Writes sweep.csv (one line per run), sweep.md (mean ± standard deviation
        over the seeds) and sweep.png.
        """
        values = _numbers(neg_nums or DEFAULT_NEG_NUMS, "numbers of negatives") if neg_nums or not seeds else None
        seed_values = _numbers(seeds, "seeds") if seeds else None
        plugins = misstep.get_plugins()
        base = misstep.load_recipe(recipe or quickstart_recipe(), overrides, plugins=plugins)
        data = misstep.dump_recipe(base)
        picked = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
        data, points = expand(data, values, picked) if values is not None else (data, chain_points(data))
        if seed_values:
            data, points = seeded(data, points, seed_values)
        data["name"] = f"{base.name}-sweep"
        data["run_dir"] = None  # runs/<name>-sweep unless --run-dir
        expanded = misstep.validate_recipe(data, plugins=plugins, file=f"{recipe or QUICKSTART} (sweep)")
        run = misstep.run_recipe(expanded, run_dir=run_dir, quiet=quiet)
        what = "accuracy vs negatives" if values is not None else "accuracy by method"
        if seed_values:
            what += f" ({len(seed_values)} seeds)"
        report = write_report(collect_points(run, points, data), run.dir, f"{base.name}: {what}")
        click.echo(misstep.read_text(report["table"]))
        click.echo(f"CSV: {report['csv']}\nPlot: {report['plot']}")
