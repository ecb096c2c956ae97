import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from misstep.cli import cli
from misstep.plugins import get_plugins

ROOT = Path(__file__).resolve().parents[2]


def misstep(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "misstep", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_help_everywhere():
    top = misstep("--help")  # the installed command, plugins' commands included
    assert top.returncode == 0
    commands = re.findall(r"^  ([a-z][a-z-]+)\s", top.stdout.split("Commands:")[1], re.MULTILINE)
    assert {"run", "validate", "plugins", "new-plugin", "quickstart", "tool"} <= set(commands)
    get_plugins().register_commands(cli)  # what the entry point does; each command's help in this process
    for command in commands:
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_run_writes_the_run_folder_and_resumes(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": i, "question": f"{i}?", "answer": i}) + "\n" for i in range(4)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: cli-demo\nstages:\n  - use: tasks\n    tasks: {{use: jsonl, path: {data}}}\n")
    first = misstep("run", recipe, "--run-dir", tmp_path / "run")
    assert first.returncode == 0, first.stderr
    assert "Run finished" in first.stdout
    again = misstep("run", recipe, "--run-dir", tmp_path / "run", "--set", "stages.tasks.limit=10")
    assert again.returncode == 0
    assert "moved to" in again.stderr  # changed configuration: old outputs kept aside
    skipped = misstep("run", recipe, "--run-dir", tmp_path / "run", "--set", "stages.tasks.limit=10")
    assert "already finished; skipped" in skipped.stderr


def test_run_reports_data_errors_without_traceback(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "1?"}\nnot json\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: bad-data\nstages:\n  - use: tasks\n    tasks: {{use: jsonl, path: {data}}}\n")
    result = misstep("run", recipe, "--run-dir", tmp_path / "run", "--quiet")
    assert result.returncode == 2
    assert f"{data}:2: not valid JSON" in result.stderr and "Traceback" not in result.stderr
    missing = misstep("validate", tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "recipe file not found" in missing.stderr


def test_readme_commands_and_ci_agree():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(python3 -m venv .venv && .*?)\n```", readme)
    assert len(blocks) >= 2
    main_job, tests = blocks[0], blocks[1]
    assert main_job.endswith("misstep quickstart")
    test_command = tests.split("&& ")[-1]
    assert test_command.startswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci and "torch==2.13.0" in ci and '"$status" -eq 5' in ci


def test_describe_lists_a_components_options():
    out = misstep("describe", "jsonl")
    assert out.returncode == 0
    assert "task 'jsonl'" in out.stdout and "path: Path (required)" in out.stdout
    assert "question: str (default 'question')" in out.stdout and "field holding the question" in out.stdout
    assert "tasks: list[TaskRef] (required)" in misstep("describe", "tasks").stdout
    unknown = misstep("describe", "nope")
    assert unknown.returncode == 2 and "installed:" in unknown.stderr
