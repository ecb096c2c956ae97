"""The records misstep passes around: tasks, messages, trajectories, verdicts and training examples.

Every record is a pydantic model that round-trips through JSON Lines (see :mod:`misstep.jsonl`).
Each carries ``schema_version`` so that files written by a newer misstep are refused, not misread.
Version 2 added native tool calls (``Message.tool_calls``, ``tool_call_id``, ``name``) and the tools'
JSON schemas (``tools``); version-1 records lack them and read as records without tool calls.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

SCHEMA_VERSION = 2

Role = Literal["system", "user", "assistant", "tool"]
Answer = str | int | float | bool | list[str] | None


class Record(BaseModel):
    """Base of every stored record: strict keys and a schema version."""

    model_config = ConfigDict(extra="forbid")
    kind: ClassVar[str] = "record"

    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="before")
    @classmethod
    def _read_older(cls, data: Any) -> Any:
        """An older record is read as the current version: version 1 only lacks fields that default to empty."""
        if isinstance(data, dict) and isinstance(data.get("schema_version"), int) and \
                0 < data["schema_version"] < SCHEMA_VERSION:
            return {**data, "schema_version": SCHEMA_VERSION}
        return data

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} was written by a newer misstep (this one reads up to "
                f"{SCHEMA_VERSION}); upgrade misstep to read it"
            )
        return value

    @field_validator("schema_version")
    @classmethod
    def _real_version(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"schema_version {value} is not a misstep schema (versions start at 1); fix or "
                             "remove the field")
        return value


class Task(Record):
    """One question to solve, with its gold answer."""

    kind: ClassVar[str] = "task"

    id: str
    question: str
    answer: Answer = None
    dataset: str = ""
    split: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer")
    @classmethod
    def _finite(cls, value: Answer) -> Answer:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"the answer {value} is not a number a task can have; give a finite number or text")
        return value


WEIGHT = ("loss weight of the trained tokens: 1 is plain SFT, 0 not trained, above 1 weighted up (TriPosT: 1.5), "
          "negative (down to -1) an unlikelihood term -|w| * log(1 - p) (the `sft` loss needs `unlikelihood: true`)")


class WeightSpan(BaseModel):
    """A character range ``[start, end)`` of a message's content with its own loss weight."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0)
    end: int | None = Field(default=None, description="exclusive; None means to the end")
    weight: float = Field(ge=-1.0, allow_inf_nan=False, description=WEIGHT)


ToolSchema = dict[str, Any]
"""A tool's JSON schema as chat templates and the OpenAI API take it:
``{"type": "function", "function": {"name", "description", "parameters"}}``."""


class ToolCall(BaseModel):
    """One native function call of an assistant message: an id (answered by a ``tool`` message with the
    same ``tool_call_id``), the function's name and its arguments as a JSON object."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One conversation turn and how training treats it.

    An assistant turn may carry native ``tool_calls`` (its ``content`` may then be empty; ``None`` reads
    as empty); a ``tool`` turn answering one carries its ``tool_call_id`` and the tool's ``name``. A
    ``tool`` turn without ``tool_call_id`` is a text observation (ReAct). Empty tool fields are left
    out of the JSON, so text-only records look as they did in schema version 1.
    ``train`` left as None means the default: assistant turns are trained, all others masked.
    ``weight`` scales the loss of every trained token; ``spans`` override it for parts of the content.
    A negative weight (down to -1) makes the tokens unlikelihood terms, ``-|w| * log(1 - p)``.
    """

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    train: bool | None = None
    weight: float = Field(default=1.0, ge=-1.0, allow_inf_nan=False, description=WEIGHT)
    spans: list[WeightSpan] = Field(default_factory=list)

    @field_validator("content", mode="before")
    @classmethod
    def _null_content(cls, value: Any) -> Any:
        return "" if value is None else value

    @model_validator(mode="after")
    def _tool_fields(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only assistant messages make tool calls (this one is a {self.role} message)")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError(f"only tool messages answer a tool call (this one is a {self.role} message)")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_tool_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("tool_calls", "tool_call_id", "name"):
            if key in data and not data[key]:
                del data[key]
        return data

    @property
    def trained(self) -> bool:
        return self.role == "assistant" if self.train is None else self.train


def check_tool_turns(messages: list[Message]) -> None:
    """Raise ValueError naming the message when a ``tool`` turn answers a call id that no earlier assistant
    turn made, or when two calls share an id."""
    calls: set[str] = set()
    for index, message in enumerate(messages):
        for call in message.tool_calls:
            if call.id in calls:
                raise ValueError(f"message {index}: two tool calls have the id {call.id!r}; give each call its own id")
            calls.add(call.id)
        if message.tool_call_id is not None and message.tool_call_id not in calls:
            raise ValueError(f"message {index}: the tool message answers the call id {message.tool_call_id!r}, "
                             "which no earlier assistant message made")


class StepSpan(BaseModel):
    """Where one step lies when steps are parts of messages: message ``message``, characters ``[start, end)``."""

    model_config = ConfigDict(extra="forbid")

    message: int = Field(ge=0)
    start: int = Field(default=0, ge=0)
    end: int | None = Field(default=None, description="exclusive; None means to the end of the message")


class NextStep(BaseModel):
    """A next step that a branch tried from a branch point, and whether that branch succeeded."""

    model_config = ConfigDict(extra="forbid")

    message: Message
    correct: bool


class StepCredit(BaseModel):
    """The value of each step of a trajectory (written by the ``step-values`` stage).

    A step is an assistant turn after the prompt, unless ``spans`` say where each step lies (a step verifier
    that judges the lines of one message). ``values[k]`` is the value of step k + 1: the share of
    ``branches`` continuations from right after it that succeeded (the last step's value is the
    trajectory's own outcome); ``start`` is the same from right after the prompt. A step verifier gives 1
    to right steps and 0 from the first wrong one on, with no branches. ``next[k]`` holds the first step
    of each branch from point k (0: right after the prompt, k: right after step k) and its branch's outcome.
    """

    model_config = ConfigDict(extra="forbid")

    values: list[Annotated[float, Field(ge=0, le=1)]]
    start: float | None = Field(default=None, ge=0, le=1)
    branches: int = Field(default=0, ge=0, description="continuations per branch point; 0: a step verifier")
    spans: list[StepSpan] = Field(default_factory=list)
    next: list[list[NextStep]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_per_step(self) -> StepCredit:
        if self.spans and len(self.spans) != len(self.values):
            raise ValueError(f"{len(self.spans)} step spans for {len(self.values)} step values; give one span per "
                             "step, or none when the steps are the assistant turns")
        if len(self.next) > len(self.values):
            raise ValueError(f"next steps for {len(self.next)} branch points, but a trajectory of {len(self.values)} "
                             "steps has at most that many")
        return self


class Verdict(BaseModel):
    """What a verifier concluded about a trajectory's answer.

    ``first_wrong_step`` counts steps from 1 (TriPosT's verifiers: the lines of the attempt; step credit:
    the steps of ``steps``). ``steps``, set by the ``step-values`` stage, is left out of the JSON when empty.
    """

    model_config = ConfigDict(extra="forbid")

    correct: bool | None = None
    score: float = 0.0
    prediction: str | None = None
    feedback: str | None = None
    first_wrong_step: int | None = Field(default=None, ge=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    steps: StepCredit | None = None

    @model_validator(mode="after")
    def _wrong_step_exists(self) -> Verdict:
        if self.steps is not None and self.first_wrong_step is not None and \
                self.first_wrong_step > len(self.steps.values):
            raise ValueError(f"first_wrong_step {self.first_wrong_step} is past the {len(self.steps.values)} "
                             "steps that have values")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_steps(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("steps") is None:
            data.pop("steps", None)
        return data

    @property
    def label(self) -> Literal["positive", "negative", "unknown"]:
        if self.correct is None:
            return "unknown"
        return "positive" if self.correct else "negative"


class Provenance(BaseModel):
    """Where a trajectory came from."""

    model_config = ConfigDict(extra="forbid")

    source: str = ""
    model: str = ""
    temperature: float | None = None
    sample: int = 0
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class Trajectory(Record):
    """An agent's conversation on one task, with its verdict and provenance.

    ``id`` is unique within a store; collection uses ``{task_id}#{sample key}``. The first
    ``prompt_len`` messages are the prompt (instruction, question); the rest are the agent's turns
    and the observations. Reformatters rebuild the prompt (adding hints) and keep the rest.
    """

    kind: ClassVar[str] = "trajectory"

    id: str
    task_id: str
    messages: list[Message]
    prompt_len: int = Field(default=0, ge=0)
    verdict: Verdict | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    tools: list[ToolSchema] = Field(default_factory=list, description="JSON schemas of the tools it could call")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _prompt_within_messages(self) -> Trajectory:
        if self.prompt_len > len(self.messages):
            raise ValueError(f"prompt_len {self.prompt_len} is past the {len(self.messages)} messages; it counts "
                             "the leading prompt messages")
        return self

    @model_validator(mode="after")
    def _calls_answered(self) -> Trajectory:
        check_tool_turns(self.messages)
        return self

    @property
    def label(self) -> Literal["positive", "negative", "unknown"]:
        return self.verdict.label if self.verdict else "unknown"


class Example(Record):
    """A training example: a conversation whose messages say which parts are trained and how much.

    ``label`` (positive, negative or a finer class) and ``reward`` are what the reformatter knew about
    the trajectory it came from; they reach the loss with every token (``batch["examples"]``).
    """

    kind: ClassVar[str] = "example"

    id: str
    messages: list[Message]
    label: str | None = None
    reward: float | None = None
    tools: list[ToolSchema] = Field(default_factory=list, description="JSON schemas given to the chat template")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _calls_answered(self) -> Example:
        check_tool_turns(self.messages)
        return self


class Candidate(BaseModel):
    """One candidate response to a ranked prompt, with its reward (higher is better)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    reward: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class RankedExample(Record):
    """k candidate responses to one prompt with their rewards, for ranking losses (RRHF)."""

    kind: ClassVar[str] = "ranked_example"

    id: str
    prompt: list[Message]
    candidates: list[Candidate] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class PreferenceExample(Record):
    """A preference pair: one prompt, a chosen and a rejected continuation of it (DPO-style losses).

    Each side may span several turns, tool calls and tool results included; the trained tokens of a side
    are those of its trained messages, as in :class:`Example`.
    """

    kind: ClassVar[str] = "preference_example"

    id: str
    prompt: list[Message]
    chosen: list[Message] = Field(min_length=1)
    rejected: list[Message] = Field(min_length=1)
    tools: list[ToolSchema] = Field(default_factory=list, description="JSON schemas given to the chat template")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _calls_answered(self) -> PreferenceExample:
        check_tool_turns([*self.prompt, *self.chosen])
        check_tool_turns([*self.prompt, *self.rejected])
        return self
