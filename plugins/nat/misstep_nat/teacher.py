"""The scripted teacher: a backend that solves the quickstart's word problems in ReAct turns, and
makes the mistakes a sampled LLM makes, more often at higher temperature.

Each turn it reads the conversation (the question and the observations so far) and writes the next
step, ``Thought: ...`` then ``Action: calculate[x op y]``, or ``Action: finish[answer]`` at the end.
With probability ``error_rate + error_slope * temperature`` a turn holds one mistake: a wrong
operation, a wrong operand (another number of the question), a copying error (a mistyped number) or a
premature finish. Later steps use the observations they got, so a mistake propagates as it would.
The choice depends only on the sampling seed, the temperature, the question and the turn.
"""

from __future__ import annotations

import random
import typing
from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

import misstep
from pydantic import Field

from misstep_nat.arithmetic import Problem, parse_question

ErrorKind = Literal["wrong-operation", "wrong-operand", "copying", "premature-finish"]
CONFUSED = {"+": "-", "-": "+", "*": "+", "/": "*"}


def verb(left: str, op: str, right: str) -> str:
    return {"+": f"add {left} and {right}", "-": f"subtract {right} from {left}",
            "*": f"multiply {left} by {right}", "/": f"divide {left} by {right}"}[op]


def mistype(number: str, rng: random.Random) -> str:
    """``number`` with a copying slip: two adjacent digits swapped, or one digit replaced."""
    digits = [i for i, ch in enumerate(number) if ch.isdigit()]
    pairs = [i for i in digits if i + 1 in digits and number[i] != number[i + 1]]
    chars = list(number)
    if pairs and rng.random() < 0.5:
        i = rng.choice(pairs)
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    else:
        i = rng.choice(digits)
        chars[i] = rng.choice([d for d in "123456789" if d != number[i]])
    return "".join(chars)


def operand(observation: str) -> str | None:
    """An observation as an operand (parenthesised unless a plain non-negative number), None if not a number."""
    text = observation.strip()
    try:
        Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return text if text.replace(".", "", 1).isdigit() else f"({text})"


class ScriptedTeacher(misstep.Backend["ScriptedTeacher.Options"]):
    """Writes correct and realistically wrong ReAct turns for arithmetic-word-problems (no model)."""

    name = "scripted-teacher"

    class Options(misstep.Options):
        error_rate: float = Field(default=0.05, ge=0, le=1, description="chance of a mistake per turn at temperature 0")
        error_slope: float = Field(default=0.35, ge=0, description="added chance per unit of temperature")
        errors: dict[ErrorKind, float] = Field(
            default_factory=lambda: dict.fromkeys(typing.get_args(ErrorKind), 1.0),
            description="relative weight of each kind of mistake")
        seed: int = Field(default=0, description="used when a request carries no seed")

    def generate(self, conversations: Sequence[Sequence[misstep.Message]],
                 sampling: Sequence[misstep.Sampling]) -> list[str]:
        return [self.turn(list(messages), params) for messages, params in zip(conversations, sampling)]

    def error_chance(self, temperature: float) -> float:
        return min(1.0, self.options.error_rate + self.options.error_slope * temperature)

    def turn(self, messages: list[misstep.Message], sampling: misstep.Sampling) -> str:
        """The next assistant turn of one conversation."""
        start, problem = self._question(messages)
        after = messages[start + 1:]
        turn = sum(1 for m in after if m.role == "assistant")
        seed = sampling.seed if sampling.seed is not None else self.options.seed
        rng = random.Random(f"{seed}|{sampling.temperature:g}|{messages[start].content}|{turn}")
        error = self._error(rng, sampling.temperature, final=turn >= len(problem.template.steps))
        results = [m.content.split(":", 1)[-1] for m in after if m.role == "user"]
        values = {k: str(v) for k, v in problem.numbers.items()}
        last = str(max(problem.numbers.values()))  # what a premature finish gives before any result
        for index, observation in enumerate(results, start=1):
            value = operand(observation)
            if value is None:  # the calculator answered with an error: give up with the last number seen
                return self._finish(last, None, rng)
            values[f"r{index}"] = value
            last = value.strip("()")
        if turn >= len(problem.template.steps):
            return self._finish(last, error, rng)
        if error == "premature-finish":
            return self._finish(last, None, rng)
        return self._step(problem, turn, values, error, rng)

    def _question(self, messages: list[misstep.Message]) -> tuple[int, Problem]:
        for index, message in enumerate(messages):
            if message.role == "user" and (problem := parse_question(message.content)):
                return index, problem
        raise misstep.ComponentError(
            "the scripted teacher only solves the arithmetic-word-problems questions, and this conversation holds "
            "none; for other tasks use an LLM teacher, e.g. --set stages.collect.backend.use=openai")

    def _error(self, rng: random.Random, temperature: float, *, final: bool) -> ErrorKind | None:
        if rng.random() >= self.error_chance(temperature):
            return None
        kinds = {k: w for k, w in self.options.errors.items() if w > 0 and (not final or k == "copying")}
        if not kinds:
            return None
        return rng.choices(list(kinds), weights=list(kinds.values()))[0]

    def _finish(self, answer: str, error: ErrorKind | None, rng: random.Random) -> str:
        if error == "copying":
            answer = mistype(answer, rng)
        return f"Thought: The answer is {answer}.\nAction: finish[{answer}]"

    def _step(self, problem: Problem, turn: int, values: dict[str, str], error: ErrorKind | None,
              rng: random.Random) -> str:
        step = problem.template.steps[turn]
        left, op, right = values[step.left], step.op, values[step.right]
        if error == "wrong-operation":
            op = CONFUSED[op]
        elif error in ("wrong-operand", "copying"):
            side = rng.randrange(2)
            current = (left, right)[side]
            if error == "copying":
                replacement = mistype(current, rng)
            else:
                others = [str(n) for n in problem.numbers.values() if str(n) not in (left, right)]
                replacement = rng.choice(others) if others else (right, left)[side]
            left, right = (replacement, right) if side == 0 else (left, replacement)
        reason = step.reason.format(**problem.slots)
        return (f"Thought: {reason[0].upper()}{reason[1:]}, so I need to {verb(left, op, right)}.\n"
                f"Action: calculate[{left} {op} {right}]")


def first_injected_error(trajectory: misstep.Trajectory) -> int | None:
    """The first step (from 1) at which the scripted teacher made a mistake in ``trajectory``: the first turn
    that differs from what an error-free teacher writes after the same messages. None when it made none."""
    exact = ScriptedTeacher(ScriptedTeacher.Options(error_rate=0.0, error_slope=0.0))
    for step, index in enumerate(misstep.step_messages(trajectory), start=1):
        if exact.turn(trajectory.messages[:index], misstep.Sampling()) != trajectory.messages[index].content:
            return step
    return None
