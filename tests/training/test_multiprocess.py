"""Training in two CPU processes (torchrun, gloo): plain DDP and DeepSpeed ZeRO-3, full weights and LoRA,
match one process.

Every example is the same conversation, so each step's gradient is the same however the batch is
split across ranks: two ranks with half the batch each must end at the same weights as one process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import misstep
from misstep.errors import MisstepError
from misstep.models import load_model, trained_spec
from misstep.recipe import ModelSpec
from misstep.runner import run_recipe

from train_helpers import recipe, train_stage, varied, write_examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The examples file and the weights after training in this process with batches of 4."""
    folder = tmp_path_factory.mktemp("reference")
    examples = write_examples(folder / "examples.jsonl", vary=True)
    run = run_recipe(recipe(tiny_model, examples, train_stage(batch_size=4)), run_dir=folder / "run", quiet=True)
    return examples, load_model(trained_spec(run.dir / "train" / "model")).state_dict()


@pytest.mark.parametrize(("deepspeed", "checkpointing"), [(None, False), ("zero3", False), (None, True)],
                         ids=["ddp", "deepspeed-zero3", "ddp-checkpointed"])
def test_two_processes_train_like_one(deepspeed: str | None, checkpointing: bool, tiny_model: Path, tmp_path: Path,
                                      reference: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """With checkpointing each rank also zeroes its gradients in place and hands freed memory back."""
    examples, expected = reference
    stage = train_stage(batch_size=2, processes=2, deepspeed=deepspeed, gradient_checkpointing=checkpointing)
    run = run_recipe(recipe(tiny_model, examples, stage), run_dir=tmp_path / "run", quiet=True)
    assert run.outputs["train"]["steps"] == 3
    assert (run.dir / "train" / "workers.log").is_file()
    model = load_model(ModelSpec(path=str(run.dir / "train" / "model")))
    weights = model.state_dict()
    assert weights.keys() == expected.keys()
    base = load_model(ModelSpec(path=str(tiny_model))).state_dict()
    assert any(not torch.equal(weights[k], base[k]) for k in weights)  # trained, and saved whole
    for key in weights:
        torch.testing.assert_close(weights[key], expected[key], atol=2e-5, rtol=1e-4, msg=key)


def test_a_failing_rank_is_a_clear_error(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", count=4)
    plugins = misstep.Plugins()
    plugins.add(OnlyHere(), "only-here")  # registered in this process only: the ranks cannot build the loss
    stage = train_stage(processes=2, loss={"use": "only-here"})
    with pytest.raises(MisstepError, match=r"training with 2 processes failed .*unknown loss 'only-here'.*"
                                           r"\n.*full output: .*workers.log"):
        run_recipe(recipe(tiny_model, examples, stage, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins,
                   quiet=True)


class OnlyHereLoss(misstep.Loss):
    name = "only-here"


class OnlyHere:
    @misstep.hookimpl
    def register_losses(self, register):  # type: ignore[no-untyped-def]
        register(OnlyHereLoss)


LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.parametrize("deepspeed", [None, "zero3"], ids=["ddp", "deepspeed-zero3"])
def test_lora_in_two_processes_trains_like_one(deepspeed: str | None, tiny_model: Path, tmp_path: Path,
                                               reference: tuple[Path, dict[str, torch.Tensor]]) -> None:
    examples, _ = reference
    one = run_recipe(recipe(tiny_model, examples, train_stage(batch_size=4), lora=LORA), run_dir=tmp_path / "one",
                     quiet=True)
    two = run_recipe(recipe(tiny_model, examples, train_stage(batch_size=2, processes=2, deepspeed=deepspeed),
                            lora=LORA), run_dir=tmp_path / "two", quiet=True)
    expected = adapter_weights(one.dir / "train" / "model")
    weights = adapter_weights(two.dir / "train" / "model")
    assert weights.keys() == expected.keys() and any("lora_B" in key for key in weights)
    assert any(key.endswith("lora_B.weight") and weights[key].abs().sum() > 0 for key in weights)  # trained
    for key in weights:
        torch.testing.assert_close(weights[key], expected[key], atol=2e-5, rtol=1e-4, msg=key)


def test_unlikelihood_in_two_processes_trains_like_one(tiny_model: Path, tmp_path: Path) -> None:
    """Mixed-sign weights: the loss is normalised by the step's trained tokens across both ranks."""
    examples = []
    for i in range(8):
        messages = list(varied(i))
        messages[2 + 2 * (i % 2)] = messages[2 + 2 * (i % 2)].model_copy(update={"weight": -0.5 - 0.25 * (i % 3)})
        examples.append(misstep.Example(id=str(i), messages=messages))
    misstep.write_jsonl(tmp_path / "examples.jsonl", examples)
    loss = {"use": "sft", "unlikelihood": True, "chunk_size": 16}
    one = run_recipe(recipe(tiny_model, tmp_path / "examples.jsonl", train_stage(batch_size=4, loss=loss)),
                     run_dir=tmp_path / "one", quiet=True)
    two = run_recipe(recipe(tiny_model, tmp_path / "examples.jsonl",
                            train_stage(batch_size=2, processes=2, loss=loss)), run_dir=tmp_path / "two", quiet=True)
    expected = load_model(trained_spec(one.dir / "train" / "model")).state_dict()
    weights = load_model(trained_spec(two.dir / "train" / "model")).state_dict()
    for key in weights:
        torch.testing.assert_close(weights[key], expected[key], atol=2e-5, rtol=1e-4, msg=key)
