"""The train stage in this process: sft on the tiny model, LoRA and continuing it, resume, packing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import misstep
from misstep.errors import MisstepError, RecipeError
from misstep.models import load_model, load_tokenizer, trained_spec
from misstep.recipe import ModelSpec
from misstep.runner import run_recipe
from misstep.training.encode import encode_example

from train_helpers import MESSAGES, recipe, train_stage, write_examples


def log_lines(stage_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (stage_dir / "log.jsonl").read_text().splitlines()]


def test_sft_trains_saves_and_reloads(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl")
    run = run_recipe(recipe(tiny_model, examples, train_stage(max_steps=4)), run_dir=tmp_path / "run", quiet=True)
    out = run.outputs["train"]
    tokenizer = load_tokenizer(ModelSpec(path=str(tiny_model)))
    per_example = encode_example(misstep.Example(id="0", messages=MESSAGES), tokenizer, 1024).trained_tokens
    assert out["examples"] == 8 and out["truncated"] == 0 and out["trained_tokens"] == 8 * per_example
    assert out["steps"] == 4
    steps = [line for line in log_lines(run.dir / "train") if "loss" in line]
    assert [line["step"] for line in steps] == [1, 2, 3, 4]
    assert steps[-1]["loss"] < steps[0]["loss"]  # the same examples again and again: the loss falls
    assert all(line["trained_tokens"] == 4 * (per_example - 0) for line in steps)  # the sft metrics are logged
    assert all(0 <= line["token_accuracy"] <= 1 and line["ce"] == pytest.approx(line["loss"], rel=1e-5)
               for line in steps)  # all weights are 1: the weighted loss is the mean cross-entropy
    model_dir = run.dir / out["model"]["path"]
    info = json.loads((model_dir / "misstep.json").read_text())
    assert info == {"base": str(tiny_model.resolve()), "adapter": False, "reformatter": None,
                    "loss": {"use": "sft", "unlikelihood": False, "chunk_size": 256}, "recipe": "train-test",
                    "stage": "train"}
    assert not (run.dir / "train" / "checkpoints").exists()
    trained = load_model(trained_spec(model_dir))
    base = load_model(ModelSpec(path=str(tiny_model)))
    assert not torch.equal(trained.lm_head.weight, base.lm_head.weight)
    assert load_tokenizer(ModelSpec(path=str(model_dir))).chat_template == tokenizer.chat_template


def lora_b(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(folder / "adapter_model.safetensors").items() if "lora_B" in k}


def test_lora_adapter_saves_reloads_and_continues(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl")
    stages = [train_stage(name="first"), train_stage(name="second", init="first", learning_rate=1e-12)]
    run = run_recipe(recipe(tiny_model, examples, *stages, lora={"r": 4, "alpha": 8}), run_dir=tmp_path / "run",
                     quiet=True)
    first = run.dir / "first" / "model"
    second = run.dir / "second" / "model"
    assert json.loads((first / "misstep.json").read_text())["adapter"] is True
    spec = trained_spec(first)
    assert spec.path == str(tiny_model.resolve()) and spec.adapter == str(first)
    model = load_model(ModelSpec(path=str(first)))  # a trained adapter folder loads as base + adapter
    assert type(model).__name__.startswith("PeftModel")
    trained, continued = lora_b(first), lora_b(second)
    assert trained and all(v.abs().sum() > 0 for v in trained.values())  # LoRA B starts at 0: it was trained
    assert trained.keys() == continued.keys()
    assert all(torch.allclose(trained[k], continued[k], atol=1e-6) for k in trained)  # second started from first
    assert json.loads((second / "misstep.json").read_text())["base"] == str(tiny_model.resolve())


def test_packed_and_padded_training_see_the_same_first_loss(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl")
    stages = [train_stage(name="padded", packing=False, max_steps=1),
              train_stage(name="packed", packing=True, max_steps=1)]
    run = run_recipe(recipe(tiny_model, examples, *stages), run_dir=tmp_path / "run", quiet=True)
    padded, packed = (log_lines(run.dir / name)[0] for name in ("padded", "packed"))
    assert packed["loss"] == pytest.approx(padded["loss"], abs=1e-5)
    assert packed["trained_tokens"] == padded["trained_tokens"]


def test_a_rerun_resumes_from_the_last_checkpoint(tiny_model: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    examples = write_examples(tmp_path / "examples.jsonl")
    plugins = misstep.Plugins(entry_points=False)
    plugins.add(CrashPlugin(), "crash")
    stage = train_stage(max_steps=4, save_steps=2, loss={"use": "crash-after"})
    monkeypatch.setenv("MISSTEP_TEST_CRASH_AFTER", "3")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(recipe(tiny_model, examples, stage, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins,
                   quiet=True)
    assert (tmp_path / "run" / "train" / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.delenv("MISSTEP_TEST_CRASH_AFTER")
    run = run_recipe(recipe(tiny_model, examples, stage, plugins=plugins), run_dir=tmp_path / "run",
                     plugins=plugins, quiet=True)
    result = json.loads((run.dir / "train" / "result.json").read_text())
    assert result["resumed_from"].endswith("checkpoint-2") and result["steps"] == 4
    assert [line["step"] for line in log_lines(run.dir / "train") if "loss" in line] == [1, 2, 3, 4]


class CrashAfter(misstep.Loss):
    """sft that raises on its N-th batch when MISSTEP_TEST_CRASH_AFTER=N is set (a crash mid-training)."""

    name = "crash-after"

    def __init__(self, options: misstep.Options | None = None) -> None:
        super().__init__(options)
        self.batches = 0

    def compute(self, model, batch):  # type: ignore[no-untyped-def]
        import os

        from misstep.builtin.losses import SFT

        self.batches += 1
        if str(self.batches) == os.environ.get("MISSTEP_TEST_CRASH_AFTER"):
            raise RuntimeError("simulated crash")
        return SFT().compute(model, batch)


class CrashPlugin:
    @misstep.hookimpl
    def register_losses(self, register):  # type: ignore[no-untyped-def]
        register(CrashAfter)


# --- bad input ------------------------------------------------------------------------------------


def test_missing_examples_file(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"stages\[0\].path: '.*missing.jsonl': no such file or folder"):
        recipe(tiny_model, tmp_path / "missing.jsonl", train_stage())


def test_empty_examples_file(tiny_model: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(MisstepError, match="holds no examples"):
        run_recipe(recipe(tiny_model, empty, train_stage()), run_dir=tmp_path / "run", quiet=True)


def test_bad_record_names_file_and_line(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", count=2)
    examples.write_text(examples.read_text() + '{"id": "x", "messages": [{"role": "robot", "content": ""}]}\n')
    with pytest.raises(misstep.DataError, match=r"examples.jsonl:3"):
        run_recipe(recipe(tiny_model, examples, train_stage()), run_dir=tmp_path / "run", quiet=True)


def test_examples_longer_than_max_length(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", count=4)
    with pytest.raises(MisstepError, match=r"none of the 4 examples .* within max_length 12 \(4 were longer\)"):
        run_recipe(recipe(tiny_model, examples, train_stage(max_length=12)), run_dir=tmp_path / "run", quiet=True)
    tokenizer = load_tokenizer(ModelSpec(path=str(tiny_model)))
    length = len(encode_example(misstep.Example(id="0", messages=MESSAGES), tokenizer, 1024).input_ids)
    run = run_recipe(recipe(tiny_model, examples, train_stage(max_length=length - 3, max_steps=1)),
                     run_dir=tmp_path / "run2", quiet=True)
    assert run.outputs["train"]["truncated"] == 4 and run.outputs["train"]["examples"] == 4  # first turn kept
    with pytest.raises(MisstepError, match="max_length 5000 is longer than the model's context"):
        run_recipe(recipe(tiny_model, examples, train_stage(max_length=5000)), run_dir=tmp_path / "run3", quiet=True)


def test_unknown_loss_and_bad_options_are_recipe_errors(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", count=1)
    with pytest.raises(RecipeError, match="unknown loss 'nope'; choose one of: .*sft"):
        recipe(tiny_model, examples, train_stage(loss={"use": "nope"}))
    with pytest.raises(RecipeError, match="'missing' is not an earlier stage"):
        recipe(tiny_model, examples, train_stage(init="missing"))
    with pytest.raises(MisstepError, match="precision fp16 needs a GPU"):
        run_recipe(recipe(tiny_model, examples, train_stage(precision="fp16")), run_dir=tmp_path / "run", quiet=True)
    with pytest.raises(MisstepError, match="not valid training arguments: sawtooth is not a valid SchedulerType"):
        run_recipe(recipe(tiny_model, examples, train_stage(lr_scheduler="sawtooth")), run_dir=tmp_path / "r3",
                   quiet=True)
    with pytest.raises(RecipeError, match="deepspeed: 'zero9': neither one of zero2, zero3, zero3-offload nor an "
                       "existing file or folder"):
        recipe(tiny_model, examples, train_stage(deepspeed="zero9"))


def test_accumulation_and_checkpointing_reach_the_same_weights(tiny_model: Path, tmp_path: Path) -> None:
    """Examples of different lengths: two accumulated half-batches are normalised by the step's trained
    tokens (not averaged per half), so they give the update of one batch; checkpointing changes nothing."""
    examples = write_examples(tmp_path / "examples.jsonl", vary=True)
    stages = [train_stage(name="plain"), train_stage(name="accumulated", batch_size=2, gradient_accumulation=2),
              train_stage(name="checkpointed", gradient_checkpointing=True)]
    run = run_recipe(recipe(tiny_model, examples, *stages), run_dir=tmp_path / "run", quiet=True)
    plain, *others = (load_model(trained_spec(run.dir / name / "model")).state_dict()
                      for name in ("plain", "accumulated", "checkpointed"))
    for other in others:
        for key in plain:
            torch.testing.assert_close(other[key], plain[key], atol=2e-5, rtol=1e-4, msg=key)
    assert run.outputs["accumulated"]["steps"] == run.outputs["plain"]["steps"] == 3


class CheckpointingProbe(misstep.Loss):
    """sft that records whether the model it trains has gradient checkpointing on."""

    name = "checkpointing-probe"
    per_token = True
    seen: list[bool] = []

    def compute(self, model, batch):  # type: ignore[no-untyped-def]
        CheckpointingProbe.seen.append(bool(model.is_activation_checkpointing))
        scores = misstep.token_logprobs(model, batch)
        return misstep.LossOutput(scores.nll(batch.get("num_items_in_batch")), scores.metrics())


class ProbePlugin:
    @misstep.hookimpl
    def register_losses(self, register: misstep.Register) -> None:
        register(CheckpointingProbe)


def test_gradient_checkpointing_full_or_selective_with_lora_and_packing_changes_nothing(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", vary=True)
    plugins = misstep.Plugins(entry_points=False)
    plugins.add(ProbePlugin(), "probe")
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}
    stages = [train_stage(name=name, packing=True, gradient_checkpointing=checkpointing,
                          loss={"use": "checkpointing-probe"})
              for name, checkpointing in (("plain", False), ("checkpointed", True), ("selective", "selective"))]
    CheckpointingProbe.seen = []
    run = run_recipe(recipe(tiny_model, examples, *stages, lora=lora, plugins=plugins), run_dir=tmp_path / "run",
                     plugins=plugins, quiet=True)
    assert CheckpointingProbe.seen == [False] * 3 + [True] * 6
    plain, checkpointed, selective = (load_file(run.dir / name / "model" / "adapter_model.safetensors")
                                      for name in ("plain", "checkpointed", "selective"))
    assert any(key.endswith("lora_B.weight") and plain[key].abs().sum() > 0 for key in plain)  # trained
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], atol=2e-5, rtol=1e-4, msg=key)
        torch.testing.assert_close(selective[key], plain[key], atol=2e-5, rtol=1e-4, msg=key)


def signed_examples(path: Path) -> Path:
    """Examples whose first assistant turn is an unlikelihood term (weight -0.5) in every other example."""
    examples = []
    for i in range(8):
        messages = list(MESSAGES)
        if i % 2:
            messages[2] = messages[2].model_copy(update={"weight": -0.5})
        examples.append(misstep.Example(id=f"e{i}", messages=messages))
    misstep.write_jsonl(path, examples)
    return path


def test_sft_refuses_negative_weights_without_unlikelihood(tiny_model: Path, tmp_path: Path) -> None:
    examples = signed_examples(tmp_path / "examples.jsonl")
    with pytest.raises(misstep.DataError, match=r"examples.jsonl: example 'e1' has tokens of negative weight "
                                                r"\(unlikelihood terms\), which loss 'sft' does not train: set "
                                                r"`loss: \{use: sft, unlikelihood: true\}`"):
        run_recipe(recipe(tiny_model, examples, train_stage()), run_dir=tmp_path / "run", quiet=True)


def test_sft_with_unlikelihood_trains_negative_weights(tiny_model: Path, tmp_path: Path) -> None:
    examples = signed_examples(tmp_path / "examples.jsonl")
    stage = train_stage(loss={"use": "sft", "unlikelihood": True, "chunk_size": 8})
    run = run_recipe(recipe(tiny_model, examples, stage), run_dir=tmp_path / "run", quiet=True)
    steps = [line for line in log_lines(run.dir / "train") if "loss" in line]
    assert len(steps) == 3 and all(line["negative_tokens"] > 0 and line["unlikelihood"] > 0 for line in steps)
