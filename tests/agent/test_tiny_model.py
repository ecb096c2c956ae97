"""The whole loop on the tiny local model: collection with the default ``hf`` backend, a collection
killed mid-way and resumed, and ``misstep eval`` from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import misstep
from misstep import load_recipe, read_jsonl, run_recipe
from misstep.agent import trajectory_key

HERE = Path(__file__).parent


def rows(count):
    return [{"id": f"q{i}", "question": f"What is {i} plus {i}?", "answer": 2 * i} for i in range(count)]


def collect_recipe(tiny_model, tasks, **extra):
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in extra.items())
    return f"""
name: tiny-collect
model: {{path: {tiny_model}}}
stages:
  - use: collect
    tasks: {{use: jsonl, path: {tasks}}}
    tools: [add]
    verifier: exact
{lines}"""


def stored(run_dir):
    return list(read_jsonl(run_dir / "collect" / "trajectories.jsonl", misstep.Trajectory))


def test_collect_with_the_recipes_model_stores_verified_trajectories(tiny_model, tmp_path, tasks_file, write_recipe,
                                                                    plugins):
    recipe = load_recipe(write_recipe(collect_recipe(tiny_model, tasks_file(rows(4)), max_new_tokens=16,
                                                     max_turns=2)), plugins=plugins)
    run = run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    trajectories = stored(tmp_path / "run")
    assert len(trajectories) == run.outputs["collect"]["count"] == 12  # 4 tasks x 3 temperatures
    assert Counter(t.provenance.temperature for t in trajectories) == {0.2: 4, 0.5: 4, 0.7: 4}
    for trajectory in trajectories:
        assert trajectory.verdict is not None and trajectory.provenance.model == str(tiny_model)
        assert trajectory.messages[trajectory.prompt_len].role == "assistant"
        assert "\nObservation:" not in trajectory.messages[trajectory.prompt_len].content
        assert 1 <= trajectory.metadata["turns"] <= 2
    counts = run.outputs["collect"]
    assert counts["positives"] + counts["negatives"] == 12


SUBPROCESS = """
import sys
import misstep
from agent_components import AgentTestPlugin
plugins = misstep.Plugins(entry_points=False)
plugins.add(AgentTestPlugin(), "agent-test")
misstep.run_recipe(misstep.load_recipe(sys.argv[1], plugins=plugins), run_dir=sys.argv[2], plugins=plugins, quiet=True)
"""


@pytest.mark.slow
def test_a_collection_killed_mid_way_resumes_with_one_record_per_rollout(tiny_model, tmp_path, tasks_file,
                                                                          write_recipe, plugins):
    recipe = write_recipe(collect_recipe(tiny_model, tasks_file(rows(12)), max_new_tokens=48, max_turns=1,
                                         batch_size=1))
    store = tmp_path / "run" / "collect" / "trajectories.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", SUBPROCESS, str(recipe), str(tmp_path / "run")], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (store.exists() and store.read_text().count("\n") >= 3):
            assert process.poll() is None, "the collection ended before it could be killed"
            assert time.monotonic() < deadline, "the collection stored nothing within two minutes"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    before = {trajectory_key(t) for t in stored(tmp_path / "run")}
    assert 3 <= len(before) < 36

    run = run_recipe(load_recipe(recipe, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    keys = Counter(trajectory_key(t) for t in stored(tmp_path / "run"))
    assert len(keys) == 36 and set(keys.values()) == {1}  # 12 tasks x 3 temperatures, each stored once
    assert before <= set(keys)
    assert run.outputs["collect"]["count"] == 36


def test_misstep_eval_on_the_command_line(tiny_model, tmp_path, tasks_file, plugins, monkeypatch):
    from misstep import cli as cli_module
    from misstep import plugins as plugins_module

    monkeypatch.setattr(plugins_module, "_plugins", plugins)
    plugins.register_commands(cli_module.cli)
    tasks = tasks_file(rows(3))
    out = tmp_path / "eval"
    args = ["eval", "--model", str(tiny_model), "--tasks", str(tasks), "--tool", "add", "--verifier", "exact",
            "--max-turns", "2", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli_module.cli, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert metrics["model"] == str(tiny_model) and metrics["metrics"]["all"]["count"] == 3
    assert "| all | 3 |" in result.output and f"Metrics: {out / 'evaluate' / 'metrics.json'}" in result.output
    trajectories = list(read_jsonl(out / "evaluate" / "trajectories.jsonl", misstep.Trajectory))
    assert {t.provenance.temperature for t in trajectories} == {0.0}

    again = CliRunner().invoke(cli_module.cli, args)  # a finished evaluation is not run twice
    assert again.exit_code == 0 and "Loading" not in again.output
    assert again.output.strip() == result.output[result.output.index("Model `"):].strip()

    missing = CliRunner().invoke(cli_module.cli, ["eval", "--model", str(tiny_model), "--tasks", str(tmp_path / "no.jsonl"),
                                                  "--verifier", "exact", "--out", str(tmp_path / "e2")])
    assert missing.exit_code == 2 and "no.jsonl': no such file or folder" in missing.output
