"""Checkpoints a kill leaves half-written: a training process killed (-9) while it writes a checkpoint,
then re-run, resumes from the newest complete checkpoint, says which, and reports the whole run's loss."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from misstep.errors import ComponentError
from misstep.models import load_model
from misstep.recipe import ModelSpec
from misstep.runner import run_recipe
from misstep.training.checkpoints import checkpoint_problem, file_problem, last_complete_checkpoint

from train_helpers import recipe, train_stage, write_examples

HERE = Path(__file__).parent
STAGE = train_stage(max_steps=4, save_steps=2, learning_rate=1e-2)  # checkpoints at steps 2 and 4

# The child trains the recipe and is killed (SIGKILL, by itself: deterministic) in the middle of writing
# the weights of checkpoint-4: the file is half there, as a kill during the write leaves it.
KILLED_AT_CHECKPOINT_4 = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import transformers.modeling_utils as modeling
    from misstep.runner import run_recipe
    from train_helpers import recipe, train_stage

    real_save = modeling.safe_save_file

    def save(tensors, filename, *args, **kwargs):
        real_save(tensors, filename, *args, **kwargs)
        if "checkpoint-4" in str(filename):
            with open(filename, "r+b") as handle:
                handle.truncate(os.path.getsize(filename) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    modeling.safe_save_file = save
    model, examples, run_dir = sys.argv[2:5]
    run_recipe(recipe(model, Path(examples), train_stage(max_steps=4, save_steps=2, learning_rate=1e-2)),
               run_dir=Path(run_dir), quiet=True)
""")


def log_losses(stage_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (stage_dir / "log.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line]


@pytest.fixture(scope="module")
def killed(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run folder whose training was killed while writing checkpoint-4, and its examples file."""
    folder = tmp_path_factory.mktemp("killed")
    examples = write_examples(folder / "examples.jsonl")
    child = subprocess.run([sys.executable, "-c", KILLED_AT_CHECKPOINT_4, str(HERE), str(tiny_model), str(examples),
                            str(folder / "run")], capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    return folder / "run", examples


def fresh_copy(killed: tuple[Path, Path], tmp_path: Path) -> Path:
    shutil.copytree(killed[0], tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_leaves_it_incomplete(killed: tuple[Path, Path]) -> None:
    checkpoints = killed[0] / "train" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoint_problem(checkpoints / "checkpoint-2") is None
    assert "no trainer_state.json" in checkpoint_problem(checkpoints / "checkpoint-4")
    assert "cut short" in file_problem(checkpoints / "checkpoint-4" / "model.safetensors")
    newest, skipped = last_complete_checkpoint(checkpoints)
    assert newest == checkpoints / "checkpoint-2"
    assert skipped == ["skipped the incomplete checkpoint checkpoint-4: no trainer_state.json (the Trainer writes it "
                       "last: the save was interrupted)"]


@pytest.mark.slow
def test_each_cut_file_of_a_checkpoint_is_found(killed: tuple[Path, Path], tmp_path: Path) -> None:
    complete = killed[0] / "train" / "checkpoints" / "checkpoint-2"
    for name, expected in (("model.safetensors", "model.safetensors: cut short"),
                           ("optimizer.pt", "optimizer.pt: cut short (not a complete torch archive)"),
                           ("trainer_state.json", "trainer_state.json: not valid JSON")):
        copy = tmp_path / name / "checkpoint-2"
        shutil.copytree(complete, copy)
        size = (copy / name).stat().st_size
        with (copy / name).open("r+b") as handle:
            handle.truncate(size - 10)
        assert checkpoint_problem(copy).startswith(expected), name
    weightless = tmp_path / "weightless" / "checkpoint-2"
    shutil.copytree(complete, weightless)
    (weightless / "model.safetensors").unlink()
    assert checkpoint_problem(weightless) == "no weights file"


@pytest.mark.slow
def test_the_rerun_resumes_from_the_newest_complete_checkpoint_with_the_whole_runs_loss(
        tiny_model: Path, killed: tuple[Path, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run_dir = fresh_copy(killed, tmp_path)
    run = run_recipe(recipe(tiny_model, killed[1], STAGE), run_dir=run_dir)
    log = capfd.readouterr().err
    assert "[train] skipped the incomplete checkpoint checkpoint-4: no trainer_state.json" in log
    assert "[train] resuming from checkpoint-2 (step 2)" in log
    result = json.loads((run_dir / "train" / "result.json").read_text())
    assert result["resumed_from"].endswith("checkpoint-2") and result["steps"] == 4
    losses = log_losses(run_dir / "train")
    assert len(losses) == 4  # steps 1-2 from the checkpoint's history, 3-4 from the resumed part
    assert result["train_loss"] == pytest.approx(sum(losses) / 4, rel=1e-6)  # not the mean of steps 3-4 only
    assert sum(losses[2:]) / 2 != pytest.approx(result["train_loss"], rel=1e-3)
    straight = run_recipe(recipe(tiny_model, killed[1], STAGE), run_dir=tmp_path / "straight", quiet=True)
    assert run.outputs["train"]["train_loss"] == pytest.approx(straight.outputs["train"]["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_with_no_complete_checkpoint_the_rerun_starts_over(tiny_model: Path, killed: tuple[Path, Path],
                                                           tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run_dir = fresh_copy(killed, tmp_path)
    weights = run_dir / "train" / "checkpoints" / "checkpoint-2" / "model.safetensors"
    with weights.open("r+b") as handle:  # a half-written weights file beside a finished trainer_state.json
        handle.truncate(weights.stat().st_size // 2)
    run = run_recipe(recipe(tiny_model, killed[1], STAGE), run_dir=run_dir)
    log = capfd.readouterr().err
    assert "skipped the incomplete checkpoint checkpoint-2: model.safetensors: cut short" in log
    assert "[train] no complete checkpoint: training from the start" in log
    result = json.loads((run_dir / "train" / "result.json").read_text())
    assert result["resumed_from"] is None and result["steps"] == 4 and run.outputs["train"]["steps"] == 4


@pytest.mark.slow
def test_a_model_with_a_cut_weights_file_is_refused(killed: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(killed[0] / "train" / "checkpoints" / "checkpoint-4", folder)  # the half-written save
    with pytest.raises(ComponentError, match=r"model.safetensors: cut short .*was their save interrupted\?"):
        load_model(ModelSpec(path=str(folder)))
