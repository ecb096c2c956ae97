"""Hook implementations of misstep-trice (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep

from misstep_trice.annotations import Gsm8kCalls
from misstep_trice.answers import TriceMath, TriceQA
from misstep_trice.evaluate import TriceEvaluate, TriceReport
from misstep_trice.stage2 import RankStage
from misstep_trice.rrhf import RRHF
from misstep_trice.stage1 import Stage1


@misstep.hookimpl
def register_verifiers(register: misstep.Register) -> None:
    register(TriceMath)
    register(TriceQA)


@misstep.hookimpl
def register_backends(register: misstep.Register) -> None:
    register(Gsm8kCalls)


@misstep.hookimpl
def register_losses(register: misstep.Register) -> None:
    register(RRHF)


@misstep.hookimpl
def register_stages(register: misstep.Register) -> None:
    register(Stage1)
    register(RankStage)
    register(TriceEvaluate)
    register(TriceReport)
