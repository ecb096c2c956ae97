"""CPU training hands freed memory back: the C heap's free pages, and gradients zeroed in place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback, TrainingArguments

import misstep
from misstep.models import load_tokenizer
from misstep.specs import ModelSpec
from misstep.training import checkpointing, host_memory
from misstep.training.encode import encode_example
from misstep.training.engine import _trainer_class, collator

from train_helpers import load_model, varied


# Run in a fresh interpreter: in the test process, holes that earlier tests left in the heap are already
# resident, so new blocks land there and freeing them changes nothing that RSS can see.
HOLES = """
import torch
from misstep.training import host_memory

MIB = 2**20


def resident_mib():
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS in /proc/self/status")


large = torch.ones(16 * MIB // 4)
del large  # freeing a 16 MiB block raises glibc's mmap threshold above the 2 MiB blocks below
start = resident_mib()
pinned, transient = [], []
for _ in range(128):
    transient.append(torch.ones(2 * MIB // 4))
    pinned.append(torch.ones(16 * 1024))  # 64 KiB each, live, between them
del transient
held = resident_mib() - start - 8  # minus the 8 MiB still in use
host_memory.release()
print(held, resident_mib() - start - 8, len(pinned))
"""


@pytest.mark.skipif(host_memory._malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_release_hands_the_heaps_free_pages_back() -> None:
    """Blocks freed between live ones stay resident in glibc's heap until released."""
    child = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True)
    held, released, pinned = (float(value) for value in child.stdout.split())
    assert held > 64, f"glibc kept {held:.0f} MiB of the 256 MiB freed: nothing to release"
    assert released < 16, f"{released:.0f} of {held:.0f} MiB freed still resident after release()"
    assert pinned == 128


class Gradients(TrainerCallback):
    """Notes the address of every gradient before each optimizer step."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.addresses: list[list[int]] = []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.addresses.append([p.grad.data_ptr() for p in self.model.parameters() if p.grad is not None])


def train(tiny_model: Path, out: Path, *, checkpointed: bool = True,
          reuse: bool = True) -> tuple[dict[str, torch.Tensor], list[list[int]]]:
    """Three steps (two micro-batches each) of sft on the tiny model with the engine's Trainer on CPU, with or
    without full gradient checkpointing and (with it) reused gradients."""
    torch.manual_seed(0)
    model = load_model(tiny_model)
    if checkpointed:
        checkpointing.enable(model, "full")
    tokenizer = load_tokenizer(ModelSpec(path=str(tiny_model)))
    loss = misstep.get_plugins().create("loss", "sft", {})
    features = [encode_example(misstep.Example(id=str(i), messages=varied(i)), tokenizer, 256) for i in range(12)]
    arguments = TrainingArguments(output_dir=str(out), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                                  learning_rate=1e-3, max_steps=3, save_strategy="no", report_to="none",
                                  disable_tqdm=True, use_cpu=True, seed=0)
    trainer = _trainer_class()(model=model, args=arguments, train_dataset=features, loss=loss,
                               data_collator=collator(loss, tokenizer.pad_token_id, True, model, arguments.device))
    reusing = [c for c in trainer.callback_handler.callbacks if type(c).__name__ == "ReuseGradients"]
    assert len(reusing) == int(checkpointed), "on a CPU the engine reuses gradients with checkpointing only"
    if reusing and not reuse:
        trainer.remove_callback(reusing[0])
    probe = Gradients(model)
    trainer.add_callback(probe)
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, probe.addresses


def test_reused_gradients_train_as_fresh_ones(tiny_model: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradient checkpointing on a CPU, with gradient accumulation: the same weights after three steps, each
    step's gradients in the tensors of the first step (the Trainer's zero_grad frees them), and the heap
    released three times per micro-batch."""
    releases = []
    monkeypatch.setattr(host_memory, "release", lambda real=host_memory.release: releases.append(real()))
    reused, addresses = train(tiny_model, tmp_path / "reused")
    assert len(releases) == 3 * 2 * 3, "before the forward pass, before the backward pass and after it"
    assert len(addresses) == 3 and addresses[0] and addresses[1] == addresses[0] == addresses[2]
    fresh, _ = train(tiny_model, tmp_path / "fresh", reuse=False)
    for key, value in fresh.items():
        torch.testing.assert_close(reused[key], value, msg=key)


def test_without_checkpointing_nothing_is_released(tiny_model: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """There the peak is the activations at the start of the backward pass, which released pages and
    gradients kept alive would only add to."""
    releases = []
    monkeypatch.setattr(host_memory, "release", lambda: releases.append(1))
    train(tiny_model, tmp_path / "plain", checkpointed=False)  # asserts that no gradients are reused
    assert not releases
