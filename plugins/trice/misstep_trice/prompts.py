"""TRICE's prompts: the student's instruction and the teacher's few-shot tool-call prompt.

The defaults are the reference's wording (prompts are hyperparameters); recipes override any field.
``{tool}`` in a text is replaced by the tool name, so the QA preset works with the local ``search``.
"""

from __future__ import annotations

from typing import Literal

import misstep
from pydantic import BaseModel, ConfigDict, Field

from misstep_trice.answers import aliases, gold_number

Preset = Literal["math", "qa"]

INSTRUCTIONS: dict[str, str] = {
    "math": "Given a math problem, please answer it and you can use a {tool} for help.",
    "qa": "Given a question, please answer it and you can use a {tool} for help.",
}
DEFAULT_TOOLS: dict[str, str] = {"math": "calculator", "qa": "search"}

TEACHER_SYSTEMS: dict[str, str] = {
    "math": (
        'I will provide you with a math Question and a Golden answer. I need you to write "{tool}(formula)" to '
        'invoke the API for assistance in solving the question, where "formula" is the formula to reach the '
        "Golden answer. Here are some examples:"
    ),
    "qa": (
        'I will provide you with a Question, Golden answers. I need you to write "{tool}(term)" to invoke the API '
        'for assistance in answering the Question, where "term" is the search term you want to look up to obtain '
        "the Golden answers. Here are some examples:"
    ),
}


class Shot(BaseModel):
    """One worked example: a question, its gold answers and the wanted output."""

    model_config = ConfigDict(extra="forbid")

    question: str
    answer: str | list[str]
    output: str


TEACHER_SHOTS: dict[str, list[Shot]] = {
    "math": [
        Shot(question="Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
             "How many clips did Natalia sell altogether in April and May?", answer="72", output="{tool}(48+48/2)"),
        Shot(question="Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
             "How much did she earn?", answer="10", output="{tool}((12/60)*50)"),
        Shot(question="Betty is saving money for a new wallet which costs $100. Betty has only half of the money she "
             "needs. Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her "
             "parents. How much more money does Betty need to buy the wallet?", answer="5",
             output="{tool}(100-100/2-15-15*2)"),
    ],
    "qa": [
        Shot(question="what is nina dobrev nationality?", answer=["Bulgaria"], output="{tool}(Nina Dobrev nationality)"),
        Shot(question="who plays penny pinchelow in dumb and dumber to", answer=["Rachel Melvin"],
             output="{tool}(Penny Pinchelow Dumb and Dumber To)"),
        Shot(question="What are oysters wrapped in bacon called?", answer=["Angels on horseback"],
             output="{tool}(oysters wrapped in bacon name)"),
        Shot(question="How did Jock die in Dallas?", answer=["Helicopter accident"], output="{tool}(Jock Ewing death)"),
    ],
}


class StudentPrompt(BaseModel):
    """The prompt a TRICE model answers: one user turn, ``instruction`` then the question on a new line."""

    model_config = ConfigDict(extra="forbid")

    preset: Preset = "math"
    instruction: str = Field(default="", description="default: the preset's instruction")
    tool: str = Field(default="", description="tool named in the instruction (default: the preset's)")
    system: str | None = None

    def render(self, question: str) -> list[misstep.Message]:
        tool = self.tool or DEFAULT_TOOLS[self.preset]
        instruction = (self.instruction or INSTRUCTIONS[self.preset]).replace("{tool}", tool)
        messages = [misstep.Message(role="system", content=self.system)] if self.system else []
        messages.append(misstep.Message(role="user", content=f"{instruction}\n{question}"))
        return messages


class TeacherPrompt(BaseModel):
    """The teacher's prompt: a system turn, then few-shot examples and the question with its gold answers."""

    model_config = ConfigDict(extra="forbid")

    preset: Preset = "math"
    tool: str = Field(default="", description="tool the teacher must call (default: the preset's)")
    system: str = Field(default="", description="default: the preset's (the reference wording)")
    shots: list[Shot] | None = Field(default=None, description="default: the preset's examples")
    example: str = "Question: {question}\nGolden answers: {answers}\nOutput: {output}\n"
    query: str = "Question: {question}\nGolden answers: {answers}\nOutput: "

    def render(self, task: misstep.Task) -> list[misstep.Message]:
        tool = self.tool or DEFAULT_TOOLS[self.preset]
        shots = self.shots if self.shots is not None else TEACHER_SHOTS[self.preset]
        text = "".join(
            self.example.format(question=s.question, answers=self._answers(s.answer),
                                output=s.output.replace("{tool}", tool))
            for s in shots
        )
        text += self.query.format(question=task.question, answers=self._answers(task.answer))
        system = (self.system or TEACHER_SYSTEMS[self.preset]).replace("{tool}", tool)
        return [misstep.Message(role="system", content=system), misstep.Message(role="user", content=text)]

    def _answers(self, answer: object) -> str:
        """Gold answers as the reference writes them: a Python-style list of at most ten strings.

        Math gold answers are reduced to their number ("#### 1,000" -> "1000").
        """
        number = gold_number(answer) if self.preset == "math" else None
        if number is not None:
            return str([str(int(number)) if number.is_integer() else f"{number:.10g}"])
        return str(aliases(answer)[:10])
