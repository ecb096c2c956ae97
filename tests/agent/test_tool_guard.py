"""The one guard around every tool call (``observe``): whatever a tool raises or returns becomes an
observation, while a real Ctrl-C still ends the run."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import misstep
from misstep.agent import Agent, Rollout
from misstep.agent.loop import observe

from agent_components import Exact, ScriptedBackend


class Broken(misstep.Tool):
    """Raises (or returns) whatever its argument names."""

    name = "broken"

    def run(self, argument: str) -> str:
        if argument == "exit":
            raise SystemExit(3)
        if argument == "interrupt":
            raise KeyboardInterrupt("raised by the tool")
        if argument == "generator":
            raise GeneratorExit
        if argument == "none":
            return None  # type: ignore[return-value]
        if argument == "long":
            raise ValueError("first line\n" + "detail\n" * 1000)
        raise RuntimeError(f"boom on {argument}")


@pytest.mark.parametrize(("argument", "observation"), [
    ("exit", "Error: tool 'broken' failed: SystemExit: 3"),
    ("interrupt", "Error: tool 'broken' failed: KeyboardInterrupt: raised by the tool"),
    ("generator", "Error: tool 'broken' failed: GeneratorExit"),
    ("none", "Error: tool 'broken' returned NoneType, not text"),
    ("long", "Error: tool 'broken' failed: ValueError: first line"),
    ("x", "Error: tool 'broken' failed: RuntimeError: boom on x"),
])
def test_anything_a_tool_raises_is_an_observation(argument: str, observation: str) -> None:
    assert observe(Broken(), argument) == observation


def test_the_run_goes_on_after_a_tool_exits() -> None:
    replies = {"q": ["Action: broken[exit]", "Action: broken[interrupt]", "Action: finish[5]"]}
    agent = Agent(ScriptedBackend(ScriptedBackend.Options(replies=replies)), [Broken()], Exact())
    [trajectory] = agent.run([Rollout(misstep.Task(id="q", question="q", answer=5, dataset="toy"))])
    observations = [m.content for m in trajectory.messages if m.content.startswith("Observation:")]
    assert observations == ["Observation: Error: tool 'broken' failed: SystemExit: 3",
                            "Observation: Error: tool 'broken' failed: KeyboardInterrupt: raised by the tool"]
    assert trajectory.metadata["end"] == "finish" and trajectory.verdict.correct is True


class CtrlC(misstep.Tool):
    """Receives a real SIGINT while it runs, as when the user presses Ctrl-C; may swallow the exception."""

    name = "ctrl-c"

    def run(self, argument: str) -> str:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal arrives during the call
        except KeyboardInterrupt:
            if argument == "swallow":
                return "carried on"
            raise
        return "no signal arrived"


@pytest.mark.parametrize("argument", ["raise", "swallow"])
def test_a_real_ctrl_c_still_ends_the_run(argument: str, python_sigint: None) -> None:
    with pytest.raises(KeyboardInterrupt):
        observe(CtrlC(), argument)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the guard's handler is gone


def test_outside_the_main_thread_everything_is_an_observation() -> None:
    observations: list[str] = []
    thread = threading.Thread(target=lambda: observations.append(observe(Broken(), "interrupt")))
    thread.start()
    thread.join()
    assert observations == ["Error: tool 'broken' failed: KeyboardInterrupt: raised by the tool"]


def test_trice_responses_run_their_call_under_the_same_guard() -> None:
    from misstep_trice.execution import execute

    execution = execute("broken(exit)", {"broken": Broken()})
    assert execution.used_tool and execution.answer == "Error: tool 'broken' failed: SystemExit: 3"
