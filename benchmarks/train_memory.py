"""Where the memory of one training step goes: weights, gradients, optimizer state, activations by part.

One optimizer step of the ``sft`` loss as the ``train`` stage runs it (``misstep.token_logprobs``; rows packed
as the engine packs them, ``misstep.training.engine.collator``, or padded with ``--padded``), on the first ``--batch-size`` conversations of the same data as ``train_throughput.py``::

    python benchmarks/train_memory.py --model smollm2-135m-instruct --data gsm8k:/path/to/gsm8k/train.jsonl \\
        --batch-size 8 --precision fp32

Activations are the tensors autograd saves for the backward pass during the forward pass, each storage
counted once, attributed to the module that saved it (attention, MLP, norms, embedding; ``output layer
and loss`` for what the loss saves after the model's forward pass; ``attention masks`` for 4-D masks;
``autocast weight copies`` for bf16 copies of the weights). Peaks are the process's resident memory (CPU,
``VmHWM`` reset before each phase) or ``torch.cuda.max_memory_allocated`` (GPU), above the memory held
before the step.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import misstep
from misstep.models import load_tokenizer, resolve_model
from misstep.training import checkpointing
from misstep.training.attention import share_float_masks
from misstep.training.encode import encode_example
from misstep.training.output_layer import DEFAULT_CHUNK_SIZE
from misstep.training.engine import collator
from train_throughput import arithmetic_examples, gsm8k_examples

MIB = 2**20


def resident() -> float:
    """This process's memory now: resident set (CPU) or allocated (GPU), MiB."""
    if torch.cuda.is_available():
        return torch.cuda.memory_allocated() / MIB
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set


def peak() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / MIB
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: peak memory needs Linux")


def part(module: torch.nn.Module) -> str:
    name = type(module).__name__.lower()
    for key, label in (("attention", "attention"), ("mlp", "MLP"), ("norm", "norms"), ("embedding", "embedding")):
        if key in name:
            return label
    return ""


@contextlib.contextmanager
def saved_by_part(model: torch.nn.Module, sizes: dict[str, float]) -> Iterator[None]:
    """Adds to ``sizes`` the MiB of each storage autograd saves, under the part of the model that saved it."""
    stack: list[str] = []
    seen: set[int] = set()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    shapes = {tuple(p.shape) for p in model.parameters() if p.dim() == 2}
    handles = []
    for module in model.modules():
        label = part(module)
        if label:
            handles.append(module.register_forward_pre_hook(lambda m, a, label=label: stack.append(label)))
            handles.append(module.register_forward_hook(lambda m, a, o: stack.pop() and None))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in seen and pointer not in weights and storage.nbytes():
            seen.add(pointer)
            if tensor.dim() == 4 and tensor.shape[1] == 1 and tensor.shape[-1] == tensor.shape[-2]:
                label = "attention masks"
            elif tuple(tensor.shape) in shapes and tensor.dtype != torch.float32:
                label = "autocast weight copies"
            else:
                label = stack[-1] if stack else "output layer and loss"
            sizes[label] += storage.nbytes() / MIB
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield
    finally:
        for handle in handles:
            handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--data", default="arithmetic", help="arithmetic, or gsm8k:PATH (GSM8K train.jsonl)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="fp32", help="bf16: autocast")
    parser.add_argument("--padded", action="store_true", help="padded rows instead of packed ones")
    parser.add_argument("--gradient-checkpointing", choices=("off", "selective", "full"), default="off")
    parser.add_argument("--attention", default="sdpa")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="the sft loss's chunk_size")
    args = parser.parse_args()

    if args.data.startswith("gsm8k:"):
        examples = gsm8k_examples(Path(args.data.split(":", 1)[1]), args.batch_size)
    else:
        examples = arithmetic_examples(args.batch_size, 0)
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(misstep.ModelSpec(path=args.model))
    encoded = [encode_example(e, tokenizer, args.max_length) for e in examples]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start = resident()
    model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model), dtype=torch.float32,
                                                 attn_implementation=args.attention).to(device).train()
    loss_fn = misstep.get_plugins().create("loss", "sft", {"chunk_size": args.chunk_size})
    batch = collator(loss_fn, tokenizer.pad_token_id, not args.padded, model, device)(encoded)  # as the engine packs
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    share_float_masks(model)  # as the engine's trainer does
    if args.gradient_checkpointing != "off":
        checkpointing.enable(model, args.gradient_checkpointing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters()) / MIB
    sizes: dict[str, float] = defaultdict(float)
    peaks = {}
    before = resident()
    reset_peak()
    started = time.process_time()
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    with autocast, saved_by_part(model, sizes):
        output = loss_fn.compute(model, batch)
    peaks["forward and loss"] = peak() - before
    reset_peak()
    output.loss.backward()
    seconds = time.process_time() - started
    peaks["backward"] = peak() - before
    gradients = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None) / MIB
    reset_peak()
    optimizer.step()
    peaks["optimizer step"] = peak() - before
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if isinstance(t, torch.Tensor)) / MIB
    rows, width = batch["input_ids"].shape
    trained = int((batch["labels"][:, 1:] != misstep.IGNORE_INDEX).sum())
    print(f"model {args.model}, {args.precision}, {args.attention}, {'padded' if args.padded else 'packed'} rows "
          f"{rows} x {width} ({sum(len(e.input_ids) for e in encoded)} tokens, {trained} trained), "
          f"gradient checkpointing {args.gradient_checkpointing}, loss {output.loss.item():.4f}, forward and backward "
          f"{seconds:.1f} s of CPU time; "
          f"process before the model: {start:,.0f} MiB")
    print("| what | MiB |\n| --- | ---: |")
    print(f"| weights (float32) | {parameters:,.0f} |\n| gradients | {gradients:,.0f} |\n"
          f"| AdamW state | {state:,.0f} |")
    for label, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"| activations: {label} | {size:,.0f} |")
    print(f"| activations, all | {sum(sizes.values()):,.0f} |")
    for label, value in peaks.items():
        print(f"| peak during {label}, above the weights | {value:,.0f} |")


if __name__ == "__main__":
    main()
