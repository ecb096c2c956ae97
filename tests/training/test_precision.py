"""Precision: `auto` picks bf16 only where the hardware computes it natively; bf16 autocast on CPU is correct."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misstep import precision
from misstep.backends.hf import HFBackend
from misstep.errors import MisstepError
from misstep.recipe import ModelSpec
from misstep.runner import run_recipe

from train_helpers import recipe, train_stage, write_examples


def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert precision.choose("auto", cuda=False).precision == "bf16"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    choice = precision.choose("auto", cuda=False)
    assert choice.precision == "fp32" and "no native bf16" in choice.reason
    assert precision.choose("bf16", cuda=False).precision == "bf16"  # asked for: allowed, said to be slow
    assert "emulates" in precision.choose("bf16", cuda=False).reason
    with pytest.raises(MisstepError, match="fp16 needs a GPU"):
        precision.choose("fp16", cuda=False)


def test_cpu_check_reads_torch() -> None:
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert precision.cpu_has_bf16() == native


def test_hf_backend_generates_in_the_chosen_precision(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    backend = HFBackend(HFBackend.Options(model=ModelSpec(path=str(tiny_model)), device="cpu"))
    assert "bf16" in backend.settings() and "cpu" in backend.settings()
    model, _ = backend.load()
    assert str(model.dtype) == "torch.bfloat16"
    explicit = HFBackend(HFBackend.Options(model=ModelSpec(path=str(tiny_model), dtype="float32"), device="cpu"))
    assert explicit.precision.precision == "fp32"


def first_loss(run_dir: Path) -> float:
    lines = [json.loads(line) for line in (run_dir / "train" / "log.jsonl").read_text().splitlines()]
    return next(line["loss"] for line in lines if "loss" in line)


def test_bf16_autocast_on_cpu_matches_float32(tiny_model: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", vary=True)
    losses = {}
    for name in ("fp32", "bf16"):
        run = run_recipe(recipe(tiny_model, examples, train_stage(max_steps=1, precision=name)),
                         run_dir=tmp_path / name)
        losses[name] = first_loss(run.dir)
        assert f"precision {name}" in capsys.readouterr().err  # the run log says what was chosen and why
    # master weights stay float32 under autocast: the first step's loss differs only by bf16 rounding
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bf16
