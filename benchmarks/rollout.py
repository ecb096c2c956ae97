"""Trajectories per second: the batched agent loop versus one task at a time (the papers' loop).

Both loops are misstep's :class:`~misstep.agent.Agent` with the same backend, model, tools, verifier,
tasks and greedy decoding; only ``batch_size`` differs (1 is the sequential loop). Prints a table::

    python benchmarks/rollout.py --model tiny --tasks 32                     # CPU, tiny model
    python benchmarks/rollout.py --model smollm2-135m-instruct --tasks 256   # GPU

Tasks are arithmetic word problems made up from a seed, or the first N of ``--tasks-file`` (JSONL
with question/answer). The calculator tool and numeric verifier come from the installed plugins.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import misstep
from misstep.agent import Agent, Rollout
from misstep.backends.hf import HFBackend
from misstep.builtin.files import JsonlTasks


def made_up_tasks(count: int, seed: int) -> list[misstep.Task]:
    rng = random.Random(seed)
    tasks = []
    for index in range(count):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
        question = f"Tom has {a} apples and buys {c} bags of {b} apples each. How many apples does he have now?"
        tasks.append(misstep.Task(id=f"made-up-{index}", question=question, answer=a + b * c, dataset="made-up"))
    return tasks


def measure(agent: Agent, tasks: list[misstep.Task]) -> dict[str, float]:
    started = time.perf_counter()
    trajectories = list(agent.run(Rollout(task) for task in tasks))
    seconds = time.perf_counter() - started
    turns = sum(t.metadata["turns"] for t in trajectories)
    return {"trajectories": len(trajectories), "seconds": seconds, "per_second": len(trajectories) / seconds,
            "avg_turns": turns / len(trajectories)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="alias, model folder or .gguf file")
    parser.add_argument("--tasks", type=int, default=32, help="how many tasks")
    parser.add_argument("--tasks-file", type=Path, help="JSONL file with question/answer (default: made-up tasks)")
    parser.add_argument("--batch-sizes", default="1,8,64", help="comma-separated; 1 is the sequential loop")
    parser.add_argument("--sequential-tasks", type=int,
                        help="run the sequential loop (batch size 1) on the first N tasks only (default: all)")
    parser.add_argument("--max-turns", type=int, default=7)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tool", default="calculate", help="registered tool name")
    parser.add_argument("--verifier", default="numeric", help="registered verifier name")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    if args.tasks_file:
        tasks = list(JsonlTasks(JsonlTasks.Options(path=args.tasks_file, limit=args.tasks)).load())
    else:
        tasks = made_up_tasks(args.tasks, seed=0)
    plugins = misstep.get_plugins()
    tool, verifier = plugins.create("tool", args.tool), plugins.create("verifier", args.verifier)
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    backend = HFBackend(HFBackend.Options(model=misstep.ModelSpec(path=args.model), device=args.device,
                                          batch_size=max(sizes)))
    warm_up = Agent(backend, [tool], verifier, max_turns=1, max_new_tokens=4, batch_size=max(sizes))
    list(warm_up.run(Rollout(task) for task in tasks[: max(sizes)]))  # load the model, warm caches

    results = []
    for size in sizes:
        agent = Agent(backend, [tool], verifier, max_turns=args.max_turns, max_new_tokens=args.max_new_tokens,
                      batch_size=size)
        subset = tasks[: args.sequential_tasks] if size == 1 and args.sequential_tasks else tasks
        results.append({"batch_size": size, **measure(agent, subset)})
    model = backend.load()[0]
    device = str(model.device)
    if device.startswith("cuda"):
        import torch

        device += f" ({torch.cuda.get_device_name(model.device)})"
    else:
        device += f" ({platform.processor() or platform.machine()})"
    base = next((r["per_second"] for r in results if r["batch_size"] == 1), results[0]["per_second"])
    print(f"model {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{model.dtype}) on {device}; {len(tasks)} tasks (the sequential loop: the first "
          f"{args.sequential_tasks or len(tasks)}), greedy, max {args.max_turns} turns, "
          f"{args.max_new_tokens} new tokens per turn")
    print("| loop | batch size | trajectories | seconds | trajectories/s | avg turns | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        loop = "sequential" if r["batch_size"] == 1 else "batched"
        print(f"| {loop} | {r['batch_size']} | {r['trajectories']} | {r['seconds']:.2f} | {r['per_second']:.2f} | "
              f"{r['avg_turns']:.2f} | {r['per_second'] / base:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "device": device, "results": results}, indent=2))


if __name__ == "__main__":
    main()
