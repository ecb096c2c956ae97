"""Hook implementations of misstep-nat (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep

from misstep_nat import commands, corpus
from misstep_nat.arithmetic import ArithmeticWordProblems
from misstep_nat.compare import Compare
from misstep_nat.importer import NatTrajectories
from misstep_nat.reformatters import REFORMATTERS
from misstep_nat.student import Student
from misstep_nat.teacher import ScriptedTeacher


@misstep.hookimpl
def register_reformatters(register):  # type: ignore[no-untyped-def]
    for reformatter in REFORMATTERS:
        register(reformatter)


@misstep.hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(ArithmeticWordProblems)


@misstep.hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(ScriptedTeacher)


@misstep.hookimpl
def register_sources(register):  # type: ignore[no-untyped-def]
    register(NatTrajectories)


@misstep.hookimpl
def register_stages(register):  # type: ignore[no-untyped-def]
    register(Student)
    register(Compare)


@misstep.hookimpl
def register_commands(cli):  # type: ignore[no-untyped-def]
    commands.register(cli)
    corpus.register(cli)
