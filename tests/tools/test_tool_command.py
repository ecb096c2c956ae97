"""`misstep tool NAME ARGUMENT`: one tool call from the command line, with the agent loop's safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import misstep
from misstep.builtin import tool_command
from misstep.cli import Cli


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tool_command, "get_plugins", lambda: misstep.Plugins())


def misstep_tool(*args: str) -> tuple[int, str]:
    """Run ``misstep tool ARGS`` in a command group of its own; (exit code, output)."""
    group = Cli()
    tool_command.register_commands(group)
    result = CliRunner().invoke(group, ["tool", *args])
    return result.exit_code, result.output


def test_prints_the_observation() -> None:
    assert misstep_tool("calculate", "48/2 + 48") == (0, "72\n")
    assert misstep_tool("calculate", "4/6") == (0, "2/3\n")
    assert misstep_tool("calculator", "4/6") == (0, "0.6666666666666666\n")  # TRICE's full precision


def test_the_argument_is_text_even_with_a_leading_minus() -> None:
    assert misstep_tool("calculator", "-1+2") == (0, "1\n")
    assert misstep_tool("calculate", "-4/6", "-o", "max_digits=3") == (0, "-2/3\n")
    assert misstep_tool("calculate", "--", "-(2)") == (0, "-2\n")


def test_hostile_input_is_an_error_observation(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code, output = misstep_tool("calculate", f"__import__('os').system('touch {marker}')")
    assert code == 0 and output.startswith("Error: unexpected character")
    assert not marker.exists()


def test_options(tmp_path: Path) -> None:
    corpus = tmp_path / "passages.jsonl"
    corpus.write_text(json.dumps({"title": "Durmstrang", "text": "Igor Karkaroff was headmaster."}) + "\n")
    assert misstep_tool("search", "Karkaroff", "-o", f"corpus={corpus}", "-o", "k=1") == (
        0, " #1: Durmstrang: Igor Karkaroff was headmaster.\n")
    assert misstep_tool("calculate", "1 + 2 + 3", "--option", "max_length=3") == (
        0, "Error: the expression is longer than 3 characters\n")


def test_bad_names_and_options_are_one_line_errors() -> None:
    code, output = misstep_tool("calculat", "1")
    assert code == 2 and "unknown tool 'calculat'; choose one of: calculate, calculator, search" in output
    code, output = misstep_tool("calculate", "1", "-o", "max_lenght=3")
    assert code == 2 and "misstep tool calculate: max_lenght: unknown key 'max_lenght'" in output
    code, output = misstep_tool("calculate", "1", "-o", "oops")
    assert code == 2 and "expected KEY=VALUE" in output
    code, output = misstep_tool("search", "x", "-o", "corpus=/nonexistent/passages.jsonl")
    assert code == 2 and "corpus file not found" in output and "Traceback" not in output


class Raising(misstep.Tool):
    """A broken plugin tool."""

    name = "raising"

    def run(self, argument: str) -> str:
        raise RuntimeError(f"boom on {argument}")


class Interrupting(misstep.Tool):
    """Raises KeyboardInterrupt itself ("raise"), or receives a real Ctrl-C (SIGINT) while it runs."""

    name = "interrupting"

    def run(self, argument: str) -> str:
        if argument == "raise":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        return "no signal arrived"


class RaisingPlugin:
    @misstep.hookimpl
    def register_tools(self, register) -> None:  # type: ignore[no-untyped-def]
        register(Raising)
        register(Interrupting)


@pytest.fixture
def raising_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    plugins = misstep.Plugins()
    plugins.add(RaisingPlugin(), "raising")
    monkeypatch.setattr(tool_command, "get_plugins", lambda: plugins)


def test_a_raising_tool_gives_the_loops_error_observation(raising_plugins: None) -> None:
    assert misstep_tool("raising", "x") == (0, "Error: tool 'raising' failed: RuntimeError: boom on x\n")
    assert misstep_tool("interrupting", "raise") == (0, "Error: tool 'interrupting' failed: KeyboardInterrupt\n")


def test_a_real_ctrl_c_is_the_normal_interruption(raising_plugins: None, python_sigint: None) -> None:
    code, output = misstep_tool("interrupting", "signal")
    assert code == 130 and output.startswith("Interrupted.") and "Traceback" not in output


def test_the_installed_command() -> None:
    result = subprocess.run([sys.executable, "-m", "misstep", "tool", "calculate", "sqrt(2)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout == "1.41421\n"
