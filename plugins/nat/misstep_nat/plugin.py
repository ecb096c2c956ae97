"""Hook implementations of misstep-nat (the entry point named in pyproject.toml)."""

from __future__ import annotations

import click
import misstep

from misstep_nat import commands, corpus
from misstep_nat.arithmetic import ArithmeticWordProblems
from misstep_nat.compare import Compare
from misstep_nat.importer import NatTrajectories
from misstep_nat.reformatters import REFORMATTERS
from misstep_nat.student import Student
from misstep_nat.teacher import ScriptedTeacher


@misstep.hookimpl
def register_reformatters(register: misstep.Register) -> None:
    for reformatter in REFORMATTERS:
        register(reformatter)


@misstep.hookimpl
def register_tasks(register: misstep.Register) -> None:
    register(ArithmeticWordProblems)


@misstep.hookimpl
def register_backends(register: misstep.Register) -> None:
    register(ScriptedTeacher)


@misstep.hookimpl
def register_sources(register: misstep.Register) -> None:
    register(NatTrajectories)


@misstep.hookimpl
def register_stages(register: misstep.Register) -> None:
    register(Student)
    register(Compare)


@misstep.hookimpl
def register_commands(cli: click.Group) -> None:
    commands.register(cli)
    corpus.register(cli)
