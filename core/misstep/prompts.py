"""Prompt templates of the ReAct agent: data, with NAT's wording as defaults, overridable in recipes.

The presets ``math``, ``qa`` and ``strategyqa`` are the instructions of NAT's reference prompt files
(``prompts/{gsm8k,hotpotqa,StrategyQA}/*_conversation.json``, template ``zero-shot``) byte for byte:
NAT's released trajectories were collected with them. ``qa-offline`` and ``strategyqa-offline`` are a
wording for a local retriever (no mention of Google, the Yes/No reminder on its own line). ``tools`` is
for native tool calling, where the tools reach the model as schemas and a reply without a call ends.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from misstep.datamodel import Message

MATH_INSTRUCTION = (
    "Solve a math problem with interleaving Thought, Action, Observation steps. Thought can reason about the "
    "current situation, and Action can be two types:\n"
    "(1) calculate[expression], which calculates the expression and returns the answer.\n"
    "(2) finish[answer], which returns the answer and finishes the task."
)
QA_INSTRUCTION = (
    "Solve a question answering task with interleaving Thought, Action, Observation steps. Thought can reason "
    "about the current situation, and Action can be two types: \n"
    "(1) search[query], which searches a query on google and returns a short snippet containing the answer. "
    "Note that sometimes the snippet does not contain the answer, and some alternative search might be needed.\n"
    "(2) finish[answer], which returns the answer and finishes the task."
)
YES_OR_NO = "Remember you should answer Yes or No."
STRATEGYQA_INSTRUCTION = f"{QA_INSTRUCTION} {YES_OR_NO}"
QA_OFFLINE_INSTRUCTION = (
    "Solve a question answering task with interleaving Thought, Action, Observation steps. Thought can reason "
    "about the current situation, and Action can be two types:\n"
    "(1) search[query], which searches a query on the web and returns a short snippet containing the answer. "
    "Note that sometimes the snippet does not contain the answer, and some alternative search might be needed.\n"
    "(2) finish[answer], which returns the answer and finishes the task."
)
STRATEGYQA_OFFLINE_INSTRUCTION = f"{QA_OFFLINE_INSTRUCTION}\n{YES_OR_NO}"
TOOLS_INSTRUCTION = (
    "Solve the task. Call the tools you are given when they help; when you know the answer, reply with the "
    "answer alone, without calling a tool."
)
ACKNOWLEDGEMENT = "I've understood your instruction, start please."

Preset = Literal["math", "qa", "strategyqa", "qa-offline", "strategyqa-offline", "tools"]
PRESETS: dict[str, str] = {
    "math": MATH_INSTRUCTION,
    "qa": QA_INSTRUCTION,
    "strategyqa": STRATEGYQA_INSTRUCTION,
    "qa-offline": QA_OFFLINE_INSTRUCTION,
    "strategyqa-offline": STRATEGYQA_OFFLINE_INSTRUCTION,
    "tools": TOOLS_INSTRUCTION,
}


class PromptTemplate(BaseModel):
    """How the agent's conversation is worded.

    ``instruction`` is the first user turn (``preset`` picks NAT's math, QA or StrategyQA wording when
    it is left empty), answered by ``acknowledgement``; then ``question`` with ``{question}``;
    observations are ``observation`` with ``{observation}``.
    """

    model_config = ConfigDict(extra="forbid")

    preset: Preset = "math"
    instruction: str = ""
    acknowledgement: str | None = ACKNOWLEDGEMENT
    system: str | None = None
    question: str = "Question: {question}"
    observation: str = "Observation: {observation}"

    @property
    def instruction_text(self) -> str:
        return self.instruction or PRESETS[self.preset]

    def render(self, question: str) -> list[Message]:
        """The prompt messages for ``question``: system (optional), instruction, acknowledgement, question."""
        messages = [Message(role="system", content=self.system)] if self.system else []
        messages.append(Message(role="user", content=self.instruction_text))
        if self.acknowledgement is not None:
            messages.append(Message(role="assistant", content=self.acknowledgement, train=False))
        messages.append(Message(role="user", content=self.question.format(question=question)))
        return messages

    def render_observation(self, observation: str) -> Message:
        return Message(role="user", content=self.observation.format(observation=observation))
