"""Helpers for train-stage tests: example files and recipes with an `examples` stage and a `train` stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import misstep
from misstep.datamodel import Example, Message
from misstep.jsonl import write_jsonl
from misstep.recipe import Recipe, validate_recipe

MESSAGES = [
    Message(role="system", content="Solve a question answering task."),
    Message(role="user", content="Question: Tom has 3 bags with 12 apples. How many apples?"),
    Message(role="assistant", content="Thought: multiply.\nAction: Calculator[3 * 12]"),
    Message(role="tool", content="Observation: 36"),
    Message(role="assistant", content="Action: Finish[36]"),
]


def varied(index: int) -> list[Message]:
    """:data:`MESSAGES` with a first thought ``index`` words longer (examples with different trained lengths)."""
    thought = MESSAGES[2].model_copy(update={"content": MESSAGES[2].content.replace(
        "multiply.", "multiply" + " again" * index + ".")})
    return [*MESSAGES[:2], thought, *MESSAGES[3:]]


def write_examples(path: Path, count: int = 8, *, vary: bool = False) -> Path:
    """``count`` two-turn ReAct trajectories with an observation (copies, or of varied lengths) as Examples."""
    write_jsonl(path, [Example(id=str(i), messages=varied(i) if vary else MESSAGES) for i in range(count)])
    return path


def recipe(model: Path | str, examples: Path, *stages: dict[str, Any], lora: dict[str, Any] | None = None,
           plugins: misstep.Plugins | None = None) -> Recipe:
    """A recipe: the examples file, then the given train (or other) stages."""
    model_spec: dict[str, Any] = {"path": str(model)}
    if lora is not None:
        model_spec["lora"] = lora
    data = {"name": "train-test", "model": model_spec,
            "stages": [{"use": "examples", "path": str(examples)}, *stages]}
    return validate_recipe(data, plugins=plugins or misstep.get_plugins())


def train_stage(**options: Any) -> dict[str, Any]:
    """A small, fast train stage: a few steps, high learning rate, a log line per step."""
    return {"use": "train", "examples": "examples", "max_steps": 3, "batch_size": 4, "learning_rate": 1e-3,
            "logging_steps": 1, "warmup_ratio": 0.0, **options}



def load_model(folder: Path) -> Any:
    """A tiny model from ``folder`` in float32 with sdpa attention."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa", dtype=torch.float32)


def perturbed(model: Any) -> Any:
    """A copy of ``model`` with every weight moved a little (seeded): a reference model that differs from it."""
    import copy

    import torch

    reference = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return reference.eval()


def gradients(model: Any) -> dict[str, Any]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(first: dict[str, Any], second: dict[str, Any], rel: float) -> None:
    """The same parameters got gradients, each within ``rel`` of the other's norm."""
    assert first.keys() == second.keys() and first
    for name, grad in first.items():
        assert (grad - second[name]).norm() <= rel * second[name].norm(), name
