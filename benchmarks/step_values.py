"""How often step values find the step where the scripted teacher injected its mistake.

The teacher collects trajectories on generated word problems; the ``step-values`` stage branches teacher
continuations from after each step of every failed one and names its first wrong step; the truth is the
first step the teacher got wrong (:func:`misstep_nat.teacher.first_injected_error`: the first turn an
error-free teacher would have written differently). Prints a table, one row per setting::

    python benchmarks/step_values.py                                   # 2- and 3-step problems, 2/4/8 branches
    python benchmarks/step_values.py --steps 3 --branches 4 --temperatures 0.2,0.5

Needs no model: the teacher is scripted (a few seconds per setting on one CPU core).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import misstep
from misstep_nat.teacher import first_injected_error


def recipe(steps: int, count: int, branches: int, temperature: float) -> dict[str, Any]:
    agent = {"backend": {"use": "scripted-teacher"}, "tools": ["calculate"], "verifier": "numeric", "batch_size": 256}
    return {"name": "step-values-benchmark", "seed": 0, "model": {"path": "tiny"}, "stages": [
        {"use": "collect", "tasks": [{"use": "arithmetic-word-problems", "split": "train", "count": count, "seed": 0,
                                      "steps": [steps]}], "temperatures": [0.2, 0.5, 0.7], **agent},
        {"use": "step-values", "trajectories": "collect", "branches": branches, "temperature": temperature, **agent},
    ]}


def measure(steps: int, count: int, branches: int, temperature: float, folder: Path) -> dict[str, Any]:
    """Run collection and step values once; compare each failed trajectory's first wrong step with the truth."""
    plugins = misstep.get_plugins()
    started = time.perf_counter()
    run = misstep.run_recipe(misstep.validate_recipe(recipe(steps, count, branches, temperature), plugins=plugins),
                             run_dir=folder, plugins=plugins, quiet=True)
    seconds = time.perf_counter() - started
    outcome: Counter[str] = Counter()
    for trajectory in misstep.read_jsonl(run.output("step-values", "trajectories"), misstep.Trajectory):
        if trajectory.verdict is None or trajectory.verdict.steps is None:
            continue
        truth, found = first_injected_error(trajectory), trajectory.verdict.first_wrong_step
        outcome["failed"] += 1
        outcome["exact" if found == truth else "none found" if found is None else
                "no injected error" if truth is None else "earlier" if found < truth else "later"] += 1
    branches_run = sum(1 for _ in misstep.read_jsonl(run.output("step-values", "branches"), misstep.Trajectory))
    return {"steps": steps, "branches": branches, "temperature": temperature, **outcome,
            "exact_share": outcome["exact"] / max(outcome["failed"], 1), "branch_rollouts": branches_run,
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="2,3", help="problem sizes (calculations), comma-separated")
    parser.add_argument("--count", type=int, default=200, help="problems per size (x3 temperatures)")
    parser.add_argument("--branches", default="2,4,8", help="continuations per branch point, comma-separated")
    parser.add_argument("--temperatures", default="0.2,0.5", help="branch temperatures, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for steps in map(int, args.steps.split(",")):
            for branches in map(int, args.branches.split(",")):
                for temperature in map(float, args.temperatures.split(",")):
                    folder = Path(scratch) / f"s{steps}-b{branches}-t{temperature:g}"
                    rows.append(measure(steps, args.count, branches, temperature, folder))
    print("| problem steps | branches | branch temperature | failed | exact | earlier | later | none found | "
          "no injected error | exact share | branch rollouts | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['steps']} | {row['branches']} | {row['temperature']:g} | {row.get('failed', 0)} | "
              f"{row.get('exact', 0)} | {row.get('earlier', 0)} | {row.get('later', 0)} | {row.get('none found', 0)} | "
              f"{row.get('no injected error', 0)} | {100 * row['exact_share']:.1f}% | {row['branch_rollouts']} | "
              f"{row['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
