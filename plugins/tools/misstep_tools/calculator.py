"""The calculator tools, safe on model output: ``calculate[expression]`` (NAT) and ``calculator(expression)``
(TRICE). The expression is evaluated exactly with SymPy on an allow-listed syntax tree
(:mod:`misstep_tools.expressions`), in a warm worker process (:mod:`misstep_tools.worker`) that is killed
past the deadline, whatever SymPy is doing. This module does not import SymPy: loading the plugin stays fast.

Output: ``precision: nat`` (NAT) prints integers plain, exact rationals as fractions ("2/3"), other
numbers with 6 significant digits ("1.41421"; whole numbers keep all their digits); ``precision: full``
(TRICE's Python calculator) prints non-integers as decimals at double precision ("0.6666666666666666").
Errors are observations: "Error: ...".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import misstep
from pydantic import Field

from misstep_tools.worker import Worker, WorkerError

MAX_DIGITS = 4000
"""The most digits ``max_digits`` may allow: Python refuses to print integers longer than 4300 digits."""
Precision = Literal["nat", "full"]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one expression may cost."""

    max_length: int = 1000
    max_nodes: int = 300
    max_depth: int = 50
    max_digits: int = 1000
    timeout: float = 1.0


WORKER = Worker("misstep_tools.expressions:calculate_request")
"""One warm worker process per Python process, shared by every calculator tool (limits come per call)."""

DEADLINE_GRACE = 0.1
"""Seconds past ``timeout`` before the worker is killed, so the worker's own check can answer first."""


class Calculate(misstep.Tool["Calculate.Options"]):
    """calculate[expression]: SymPy arithmetic on a safely parsed expression (NAT's calculator)."""

    name = "calculate"
    description = "calculate[expression], which calculates the expression and returns the answer."

    class Options(misstep.Options):
        max_length: int = Field(default=Limits.max_length, gt=0, description="characters of an expression")
        max_nodes: int = Field(default=Limits.max_nodes, gt=0, description="parts (numbers, operators, calls)")
        max_depth: int = Field(default=Limits.max_depth, gt=0, description="nesting depth of the parts")
        max_digits: int = Field(default=Limits.max_digits, gt=0, le=MAX_DIGITS,
                                description="digits of any number, also midway")
        timeout: float = Field(default=Limits.timeout, gt=0, le=60,
                               description="seconds one calculation may take (a hard deadline: past it, the "
                                           "worker process computing it is killed)")
        precision: Precision = Field(default="nat", description="nat: fractions and 6 significant digits (NAT); "
                                                                "full: decimals at double precision (TRICE)")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        WORKER.start()  # warm by the first call

    def run(self, argument: str) -> str:
        limits = Limits(**self.options.model_dump(exclude={"precision"}))
        request = {"expression": argument, "limits": asdict(limits), "precision": self.options.precision}
        try:
            observation = WORKER.call(request, limits.timeout + DEADLINE_GRACE)
        except WorkerError as error:
            return f"Error: {error}"
        if observation is None:
            return f"Error: the calculation took longer than {limits.timeout:g} s"
        return str(observation)


class Calculator(Calculate):
    """calculator(expression): the calculator under the name TRICE's prompts use, printing full precision."""

    name = "calculator"
    description = "calculator(expression), which calculates the expression and returns the answer."

    class Options(Calculate.Options):
        precision: Precision = Field(default="full", description="nat: fractions and 6 significant digits (NAT); "
                                                                 "full: decimals at double precision (TRICE)")
