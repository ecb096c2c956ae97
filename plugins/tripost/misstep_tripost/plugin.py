"""Hook implementations of misstep-tripost (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep

from misstep_tripost.convert import RationalesStage, TriPosTReformatter
from misstep_tripost.evaluate import EvaluateStage
from misstep_tripost.source import EditSource
from misstep_tripost.tasks import ArithmeticTasks, SortingTasks, TriPosTFile
from misstep_tripost.verifiers import LLMVerifier, ScriptedVerifier


@misstep.hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(ArithmeticTasks)
    register(SortingTasks)
    register(TriPosTFile)


@misstep.hookimpl
def register_verifiers(register):  # type: ignore[no-untyped-def]
    register(ScriptedVerifier)
    register(LLMVerifier)


@misstep.hookimpl
def register_sources(register):  # type: ignore[no-untyped-def]
    register(EditSource)


@misstep.hookimpl
def register_reformatters(register):  # type: ignore[no-untyped-def]
    register(TriPosTReformatter)


@misstep.hookimpl
def register_stages(register):  # type: ignore[no-untyped-def]
    register(RationalesStage)
    register(EvaluateStage)
