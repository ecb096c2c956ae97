"""The batched agent loop: each turn, every live trajectory generates in one backend call.

Actions are ReAct text (``action_format="react"``: ``Action: tool[argument]``, ending with
``finish[answer]``) or native tool calls (``"native"``: the tools' JSON schemas go to the backend, the
model's calls come back as ``tool_calls`` and each result as a ``tool`` message; a reply without a call
is the final answer). Trajectories leave the batch as soon as they finish (the answer, an action error,
or the turn limit) and waiting rollouts take their places, so the backend always sees up to
``batch_size`` conversations. Finished trajectories are verified and yielded at once, for the caller to
store.
"""

from __future__ import annotations

import signal
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

from misstep.actions import ActionError, parse_action
from misstep.agent.native import ToolBox
from misstep.backends import cut_at_stop
from misstep.components import Backend, ParsedReply, Sampling, Tool, ToolCallParser, Verifier
from misstep.datamodel import Message, Provenance, Task, ToolCall, Trajectory
from misstep.errors import ComponentError
from misstep.prompts import PromptTemplate

STOP = "\nObservation:"
"""NAT's stop string: the model must not write the observation itself."""

PromptTransform = Callable[[list[Message]], list[Message]]


def observe(tool: Tool, argument: str) -> str:
    """The tool's observation for ``argument``: the one guard around every tool call.

    Whatever the tool raises (``SystemExit`` and ``KeyboardInterrupt`` included) or returns instead of
    text becomes an "Error: ..." observation, so a broken tool never ends a run. A real Ctrl-C during the
    call (SIGINT, recorded by a handler installed for the call) still raises ``KeyboardInterrupt``.
    """
    with _SigintWatch() as sigint:
        try:
            observation = tool.run(argument)
        except BaseException as error:  # noqa: BLE001 (any tool failure is an observation)
            if sigint.received:
                raise KeyboardInterrupt from None
            return f"Error: tool {tool.name!r} failed: {_describe(error)}"
    if sigint.received:  # the tool swallowed the user's Ctrl-C
        raise KeyboardInterrupt
    if not isinstance(observation, str):
        return f"Error: tool {tool.name!r} returned {type(observation).__name__}, not text"
    return observation


def _describe(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 500 characters of it)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:500]}" if lines else type(error).__name__


class _SigintWatch:
    """Records a SIGINT that arrives while it is active (then calls the handler that was there before).

    Signals reach the main thread only: in other threads nothing is installed and nothing is recorded,
    since no real Ctrl-C can arrive there.
    """

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _SigintWatch:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # not SIG_IGN (nothing to record), SIG_DFL or a handler outside Python
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        self._previous(signum, frame)

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


def rollout_seed(seed: int, task_id: str, temperature: float, sample: int) -> int:
    """A seed for one rollout that depends only on the run seed and the rollout's identity."""
    return zlib.crc32(f"{seed}|{task_id}|{temperature:g}|{sample}".encode())


@dataclass(frozen=True)
class Branch:
    """Where a rollout starts instead of a fresh prompt: ``messages``, the prompt (``prompt_len`` messages)
    and the first ``steps`` assistant turns of another trajectory with their observations; ``point``
    names this start (branches from equal messages share it)."""

    point: str
    messages: tuple[Message, ...]
    prompt_len: int
    steps: int


@dataclass(frozen=True)
class Rollout:
    """One trajectory to produce: a task, the sampling temperature, the sample number and a seed; a
    ``branch`` continues given messages instead of starting from the task's prompt."""

    task: Task
    temperature: float = 0.0
    sample: int = 0
    seed: int | None = None
    branch: Branch | None = None

    @property
    def id(self) -> str:
        if self.branch is not None:
            return f"{self.branch.point}#t{self.temperature:g}-s{self.sample}"
        return f"{self.task.id}#t{self.temperature:g}-s{self.sample}"

    @property
    def key(self) -> tuple[str, float, int]:
        return rollout_key(self.task.id if self.branch is None else self.branch.point, self.temperature, self.sample)


def rollout_key(task_id: str, temperature: float | None, sample: int) -> tuple[str, float, int]:
    """What identifies a rollout in a store: (task id, temperature, sample)."""
    return task_id, round(float(temperature or 0.0), 6), sample


@dataclass
class _Live:
    """A trajectory still in the batch."""

    rollout: Rollout
    messages: list[Message]
    prompt_len: int
    turns: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


class Agent:
    """Runs the agent loop for many rollouts at once with a backend, tools and a verifier.

    ``prompt_transform`` rewrites each rendered prompt (evaluation uses it to apply a trained model's
    ``Reformatter.inference_prompt``). ``batch_size`` bounds the conversations per backend call; 1 gives
    the one-task-at-a-time loop of the papers' code. ``action_format="native"`` needs a ``parser`` for
    calls that the backend gets as text.
    """

    def __init__(
        self,
        backend: Backend,
        tools: Sequence[Tool],
        verifier: Verifier,
        *,
        prompt: PromptTemplate | None = None,
        max_turns: int = 7,
        max_new_tokens: int = 256,
        top_p: float = 1.0,
        stop: Sequence[str] = (STOP,),
        batch_size: int = 64,
        prompt_transform: PromptTransform | None = None,
        source: str = "agent",
        action_format: Literal["react", "native"] = "react",
        parser: ToolCallParser[Any] | None = None,
    ) -> None:
        if max_turns < 1 or batch_size < 1:
            raise ComponentError(f"max_turns and batch_size must be at least 1 (got {max_turns}, {batch_size})")
        if action_format == "native" and parser is None:
            raise ComponentError("action_format native needs a tool-call parser (e.g. `tool_parser: hermes`)")
        self.parser = parser
        self.toolbox = ToolBox(tools) if action_format == "native" else None
        self.backend = backend
        self.tools = {tool.name: tool for tool in tools}
        self.verifier = verifier
        self.prompt = prompt or PromptTemplate()
        self.max_turns = max_turns
        self.max_new_tokens = max_new_tokens
        self.top_p = top_p
        self.stop = tuple(stop)
        self.batch_size = batch_size
        self.prompt_transform = prompt_transform
        self.source = source

    def run(self, rollouts: Iterable[Rollout]) -> Iterator[Trajectory]:
        """Yield one verified trajectory per rollout, in the order they finish."""
        pending = iter(rollouts)
        live: list[_Live] = []
        while True:
            while len(live) < self.batch_size and (rollout := next(pending, None)) is not None:
                live.append(self._start(rollout))
            if not live:
                return
            replies = self._replies([state.messages for state in live], [self._sampling(s) for s in live])
            if len(replies) != len(live):
                raise ComponentError(
                    f"backend {self.backend.name!r} returned {len(replies)} replies for {len(live)} conversations"
                )
            still: list[_Live] = []
            for state, reply in zip(live, replies):
                finished = self._step(state, reply) if isinstance(reply, str) else self._step_native(state, reply)
                if finished is None:
                    still.append(state)
                else:
                    yield finished
            live = still

    def _replies(self, conversations: list[list[Message]], sampling: list[Sampling]) -> list[str | ParsedReply]:
        """One backend call for the batch: text replies (ReAct) or replies with their tool calls (native)."""
        if self.toolbox is not None and self.parser is not None:
            return [*self.backend.respond(conversations, sampling, self.toolbox.schemas, self.parser)]
        return [*self.backend.generate(conversations, sampling)]

    def _start(self, rollout: Rollout) -> _Live:
        if (branch := rollout.branch) is not None:
            return _Live(rollout=rollout, messages=list(branch.messages), prompt_len=branch.prompt_len,
                         turns=branch.steps, metadata={"branch_point": branch.point, "branch_steps": branch.steps})
        prompt = self.prompt.render(rollout.task.question)
        if self.prompt_transform is not None:
            prompt = self.prompt_transform(prompt)
        return _Live(rollout=rollout, messages=list(prompt), prompt_len=len(prompt))

    def _sampling(self, state: _Live) -> Sampling:
        seed = None if state.rollout.seed is None else (state.rollout.seed + state.turns) % 2**32
        return Sampling(
            temperature=state.rollout.temperature,
            top_p=self.top_p,
            max_new_tokens=self.max_new_tokens,
            stop=self.stop,
            seed=seed,
        )

    def _step(self, state: _Live, reply: str) -> Trajectory | None:
        """Record one assistant turn and act on it; return the trajectory when the episode ended."""
        text = cut_at_stop(reply, self.stop).strip()
        state.messages.append(Message(role="assistant", content=text))
        state.turns += 1
        action = parse_action(text, self.tools)
        if isinstance(action, ActionError):
            state.metadata["action_error"] = action.message
            return self._finish(state, None, "action_error")
        if action.is_finish:
            return self._finish(state, action.argument, "finish")
        state.messages.append(self.prompt.render_observation(self._observe(action.tool, action.argument)))
        if state.turns >= self.max_turns:
            return self._finish(state, None, "max_turns")
        return None

    def _step_native(self, state: _Live, reply: ParsedReply) -> Trajectory | None:
        """Record a native-calling turn: run its calls (each result a ``tool`` message), or end the episode on
        a final answer (a reply without calls) or an action error (an unreadable, unknown or invalid call)."""
        assert self.toolbox is not None
        made = sum(len(message.tool_calls) for message in state.messages)
        calls = [ToolCall(id=call.id or f"call_{made + number}", name=call.name, arguments=call.arguments)
                 for number, call in enumerate(reply.calls)]
        state.messages.append(Message(role="assistant", content=reply.content, tool_calls=calls))
        state.turns += 1
        problem = reply.error or next(filter(None, map(self.toolbox.problem, reply.calls)), None)
        if problem is None and not calls and not reply.content:
            problem = "an empty reply: no answer and no tool call"
        if problem is not None:
            state.metadata["action_error"] = problem
            return self._finish(state, None, "action_error")
        if not calls:
            return self._finish(state, reply.content, "finish")
        for call in calls:
            tool = self.toolbox.tools[call.name]
            state.messages.append(Message(role="tool", content=observe(tool, tool.argument(call.arguments)),
                                          tool_call_id=call.id, name=call.name))
        if state.turns >= self.max_turns:
            return self._finish(state, None, "max_turns")
        return None

    def _observe(self, tool: str, argument: str) -> str:
        return observe(self.tools[tool], argument)

    def _finish(self, state: _Live, prediction: str | None, end: str) -> Trajectory:
        rollout = state.rollout
        verdict = self.verifier.verify(rollout.task, prediction, state.messages)
        return Trajectory(
            id=rollout.id,
            task_id=rollout.task.id,
            messages=state.messages,
            prompt_len=state.prompt_len,
            verdict=verdict,
            tools=self.toolbox.schemas if self.toolbox is not None else [],
            provenance=Provenance(
                source=self.source,
                model=self.backend.model_name,
                temperature=rollout.temperature,
                sample=rollout.sample,
            ),
            metadata={
                "dataset": rollout.task.dataset,
                "turns": state.turns,
                "action_errors": int(end == "action_error"),
                "end": end,
                **state.metadata,
            },
        )
