"""RRHF training-step time: the prompt encoded once per query (shared) versus once per candidate (naive).

Both layouts are misstep-trice's ``rrhf`` loss on the same batch of ranked examples (k candidates per
query); ``shared_prompt`` is the only difference. A step is one forward and backward pass. The
naive layout is what the RRHF and TRICE reference code does: one row ``[prompt | candidate]`` per
candidate. Prints a table; the two layouts' losses are checked to agree::

    python benchmarks/rrhf_step.py                                     # CPU, tiny model (hidden 256, 4 layers)
    python benchmarks/rrhf_step.py --model smollm2-135m-instruct --device cuda --dtype bfloat16 \\
        --queries 16 --prompt-lens 64,256,512                          # GPU

Token ids are random (seeded): only shapes matter for time. Responses are 8 to 40 tokens, as TRICE's
short answers and ``calculator(...)`` calls are.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from misstep.models import resolve_model
from misstep_trice.rrhf import RRHF


def features(queries: int, k: int, prompt_len: int, response_lens: tuple[int, int], vocab: int,
             seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(3, vocab) for _ in range(n)]

    batch = []
    for _ in range(queries):
        lengths = [rng.randint(*response_lens) for _ in range(k)]
        batch.append({"prompt_ids": ids(prompt_len), "candidate_ids": [ids(n) for n in lengths],
                      "candidate_trained": [[True] * n for n in lengths],
                      "rewards": [float(rng.randint(0, 4)) for _ in range(k)]})
    return batch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step(model: Any, loss: RRHF, batch: dict[str, torch.Tensor], device: str) -> tuple[float, float]:
    """Seconds for one forward and backward pass, and the loss."""
    model.zero_grad(set_to_none=True)
    sync(device)
    started = time.perf_counter()
    out = loss.compute(model, batch)
    out.loss.backward()
    sync(device)
    return time.perf_counter() - started, out.loss.item()


def measure(model: Any, batch: list[dict[str, Any]], device: str, steps: int, warmup: int) -> dict[str, dict]:
    """Both layouts on the same features, their steps interleaved (so load on the machine hits both alike)."""
    layouts = {}
    for name, shared in (("naive", False), ("shared", True)):
        loss = RRHF(RRHF.Options(shared_prompt=shared))
        tensors = {key: value.to(device) for key, value in loss.collate(batch).items()}
        layouts[name] = (loss, tensors)
    times: dict[str, list[float]] = {name: [] for name in layouts}
    values: dict[str, float] = {}
    memory: dict[str, float] = {}
    for index in range(warmup + steps):
        for name, (loss, tensors) in layouts.items():
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            seconds, values[name] = step(model, loss, tensors, device)
            if index >= warmup:
                times[name].append(seconds)
            memory[name] = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    return {name: {"ms": 1000 * statistics.median(times[name]), "loss": values[name],
                   "rows": tensors["input_ids"].shape[0], "columns": tensors["input_ids"].shape[1],
                   "memory_gib": memory[name]}
            for name, (_, tensors) in layouts.items()}


def load(args: argparse.Namespace, device: str) -> tuple[Any, str]:
    if not args.model:
        from misstep.testing import build_tiny_model

        folder = Path(tempfile.mkdtemp(prefix="rrhf-bench-"))
        build_tiny_model(folder, hidden_size=args.hidden, layers=args.layers, heads=max(args.hidden // 64, 1),
                         context=4096)
        name = f"tiny (hidden {args.hidden}, {args.layers} layers)"
    else:
        folder, name = resolve_model(args.model), args.model
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa").to(device)
    model.train()
    return model, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="alias, model folder or .gguf file (default: build a tiny Llama)")
    parser.add_argument("--hidden", type=int, default=256, help="width of the built tiny Llama")
    parser.add_argument("--layers", type=int, default=4, help="layers of the built tiny Llama")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--queries", type=int, default=4, help="queries (ranked examples) per batch")
    parser.add_argument("--k", type=int, default=5, help="candidates per query")
    parser.add_argument("--prompt-lens", default="64,256", help="comma-separated prompt lengths in tokens")
    parser.add_argument("--response-lens", default="8,40", help="min,max candidate length in tokens")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    torch.manual_seed(0)
    model, name = load(args, args.device)
    vocab = model.get_input_embeddings().weight.shape[0]
    low, high = (int(n) for n in args.response_lens.split(","))
    results = []
    for prompt_len in (int(n) for n in args.prompt_lens.split(",")):
        batch = features(args.queries, args.k, prompt_len, (low, high), vocab, seed=prompt_len)
        results.append({"prompt_len": prompt_len, **measure(model, batch, args.device, args.steps, args.warmup)})

    device = args.device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(device)})"
    else:
        device += f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model {name} ({parameters:.1f}M parameters, {args.dtype}) on {device}; {args.queries} queries x "
          f"k={args.k}, responses {low}-{high} tokens; median of {args.steps} steps after {args.warmup} warm-up, layouts interleaved")
    print("| prompt tokens | layout | rows x columns | ms / step (fwd+bwd) | peak GiB | loss | speed-up |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in results:
        for layout in ("naive", "shared"):
            r = row[layout]
            speedup = row["naive"]["ms"] / r["ms"]
            memory = "-" if r["memory_gib"] != r["memory_gib"] else f"{r['memory_gib']:.2f}"
            print(f"| {row['prompt_len']} | {layout} | {r['rows']} x {r['columns']} | {r['ms']:.1f} | {memory} | "
                  f"{r['loss']:.4f} | {speedup:.2f}x |")
        gap = abs(row["naive"]["loss"] - row["shared"]["loss"])
        if gap > 1e-2 * max(1.0, abs(row["naive"]["loss"])):
            print(f"WARNING: the layouts disagree at prompt length {row['prompt_len']} (|diff| = {gap:.3g})")
    if args.json:
        args.json.write_text(json.dumps({"model": name, "device": device, "args": vars(args) | {"json": None},
                                         "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
