"""Hook implementations of misstep-tripost (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep

from misstep_tripost.convert import RationalesStage, TriPosTReformatter
from misstep_tripost.evaluate import EvaluateStage
from misstep_tripost.source import EditSource
from misstep_tripost.tasks import ArithmeticTasks, SortingTasks, TriPosTFile
from misstep_tripost.verifiers import LLMVerifier, ScriptedVerifier


@misstep.hookimpl
def register_tasks(register: misstep.Register) -> None:
    register(ArithmeticTasks)
    register(SortingTasks)
    register(TriPosTFile)


@misstep.hookimpl
def register_verifiers(register: misstep.Register) -> None:
    register(ScriptedVerifier)
    register(LLMVerifier)


@misstep.hookimpl
def register_sources(register: misstep.Register) -> None:
    register(EditSource)


@misstep.hookimpl
def register_reformatters(register: misstep.Register) -> None:
    register(TriPosTReformatter)


@misstep.hookimpl
def register_stages(register: misstep.Register) -> None:
    register(RationalesStage)
    register(EvaluateStage)
