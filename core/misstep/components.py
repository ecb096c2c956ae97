"""What a component is, one base class per kind, and the contract of each kind's one method.

A component is a class with a ``name``, an ``Options`` pydantic model (its recipe section is
validated against it) and one obvious method. Plugins hand component classes to the ``register``
callback of the matching hook in :mod:`misstep.hookspecs`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from misstep.datamodel import (
    Example,
    Message,
    PreferenceExample,
    RankedExample,
    StepCredit,
    Task,
    ToolSchema,
    Trajectory,
    Verdict,
)
from misstep.errors import ComponentError

if TYPE_CHECKING:
    from misstep.context import StageContext


class Options(BaseModel):
    """Base of every component's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class InputPath:
    """Marks an options field that names an input file or folder: ``Annotated[Path, InputPath()]`` (also on a
    list of paths, or on one member of a union). Recipe validation reports every such path that does not
    exist, with its line; ``names`` are values that are not paths (aliases, presets)."""

    names: tuple[str, ...] = ()


O = TypeVar("O", bound=Options)


class Component(Generic[O]):
    """Base of all components. Subclasses set ``name``, optionally ``Options`` and ``summary``."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: O | None = None) -> None:
        self.options: O = options if options is not None else self.Options()  # type: ignore[assignment]

    @classmethod
    def describe(cls) -> str:
        """One line saying what the component does: ``summary`` or the docstring's first line."""
        if cls.summary:
            return cls.summary
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class TaskLoader(Component[O]):
    """Produces tasks: a dataset file loader or a generator."""

    kind = "task"

    def load(self) -> Iterable[Task]:
        raise NotImplementedError


class TrajectorySource(Component[O]):
    """Produces trajectories: from files, agent rollouts, candidate pools, interactive editing."""

    kind = "source"

    def trajectories(self, ctx: StageContext) -> Iterable[Trajectory]:
        raise NotImplementedError


_REACT_DESCRIPTION = re.compile(r"^\s*[\w-]+\s*[\[(]\s*(\w+)\s*[\])]\s*,?\s*(?:which\s+)?(.*)$", re.DOTALL)


class Tool(Component[O]):
    """A tool the agent can call: ``run`` takes the raw argument text and returns the observation.

    ``run`` must not raise on bad arguments: it returns an observation that starts with ``Error:``.
    For native tool calling a tool publishes :meth:`schema`: ``parameters`` (the JSON schema of its
    arguments) or, left None, one string argument named as in a ReAct ``description``
    (``"calculate[expression], which ..."`` gives ``expression``; otherwise ``input``).
    """

    kind = "tool"
    description: ClassVar[str] = ""
    parameters: ClassVar[dict[str, Any] | None] = None

    def run(self, argument: str) -> str:
        raise NotImplementedError

    @classmethod
    def schema(cls) -> ToolSchema:
        """The tool as chat templates (``tools=``) and the OpenAI API take it."""
        match = _REACT_DESCRIPTION.match(cls.description)
        argument, text = (match.group(1), match.group(2)[:1].upper() + match.group(2)[1:]) if match else \
            ("input", cls.description or cls.describe())
        parameters = cls.parameters or {"type": "object", "properties": {argument: {"type": "string"}},
                                        "required": [argument]}
        return {"type": "function", "function": {"name": cls.name, "description": text, "parameters": parameters}}

    def argument(self, arguments: Mapping[str, Any]) -> str:
        """The text ``run`` receives for a native call's ``arguments`` (already valid for the schema): the value
        of a single argument, else the arguments as JSON. Tools with structured ``parameters`` may override it."""
        if len(arguments) == 1:
            value = next(iter(arguments.values()))
            return value if isinstance(value, str) else json.dumps(value)
        return json.dumps(dict(arguments), ensure_ascii=False)


class Verifier(Component[O]):
    """Judges an answer against a task's gold answer.

    A step verifier also judges each step of a trajectory (:meth:`judge_steps`); the ``step-values`` stage
    uses it instead of branch rollouts with ``method: verifier``.
    """

    kind = "verifier"

    def verify(self, task: Task, prediction: str | None, messages: Sequence[Message] = ()) -> Verdict:
        raise NotImplementedError

    def judge_steps(self, task: Task, trajectory: Trajectory) -> StepCredit | None:
        """Optional: the trajectory's step values, 1 for each right step and 0 from the first wrong one on,
        with ``spans`` when the steps are parts of messages (e.g. the lines of one answer). None: this
        verifier cannot judge steps (the default), or not this trajectory's."""
        return None


class Reformatter(Component[O]):
    """Turns labelled trajectories into training examples (this is where NAT, NUT and Vanilla differ):
    :class:`Example` records for token losses, :class:`PreferenceExample` pairs for paired preference losses,
    :class:`RankedExample` pools for ranking losses.

    ``inference_prompt`` rewrites an evaluation prompt the way the trained model expects it (NAT adds
    the positive hint); the train stage stores the reformatter with the model so evaluation applies it.
    """

    kind = "reformatter"

    def reformat(self, trajectories: Iterable[Trajectory],
                 tasks: Mapping[str, Task]) -> Iterable[Example | PreferenceExample | RankedExample]:
        raise NotImplementedError

    def inference_prompt(self, prompt: list[Message]) -> list[Message]:
        return prompt

    def report(self) -> dict[str, Any] | None:
        """Optional: what the last ``reformat`` kept and dropped (JSON-ready); the ``reformat`` stage saves
        it as ``summary.json``. None (the default): nothing to report."""
        return None


@dataclass
class LossOutput:
    """A scalar loss tensor and named float metrics that the trainer logs."""

    loss: Any
    metrics: dict[str, float] = field(default_factory=dict)


class Loss(Component[O]):
    """A training objective. ``compute`` gets a token batch (padded or packed rows; its contract is in
    :mod:`misstep.training.token_loss`) unless the loss says otherwise:

    - ``ranked`` losses receive batches built from :class:`RankedExample` through their own ``collate``;
    - ``preference`` losses receive continuation batches (:mod:`misstep.training.continuations`: each prompt
      once, its continuations beside it under a 4-D mask), from :class:`PreferenceExample` pairs
      (``"paired"``: the chosen side is continuation 0, the rejected one continuation 1) or from
      :class:`Example` records labelled desirable or undesirable (``"unpaired"``: the example's own
      continuation, then the previous example's as a mismatched one, and ``batch["desirable"]``).

    Where ``uses_reference`` is true the batch also holds ``reference``: the summed log-probability of each
    continuation under the model the stage starts from, computed once before training
    (:mod:`misstep.training.reference`), so training holds one model.

    ``per_token`` losses normalise by ``batch["num_items_in_batch"]`` when the trainer passes it: the
    trained tokens of the whole optimizer step (every accumulated micro-batch, every process), so that
    accumulation and several processes give the update of one big batch. Other losses are averaged
    over micro-batches.
    """

    kind = "loss"
    ranked: ClassVar[bool] = False
    preference: ClassVar[Literal["paired", "unpaired"] | None] = None
    per_token: ClassVar[bool] = False

    @property
    def uses_reference(self) -> bool:
        """Whether batches need the reference model's log-probabilities (``batch["reference"]``)."""
        return False

    @property
    def continuations(self) -> bool:
        """Whether the loss trains on continuation batches (ranked and preference losses), not token batches."""
        return self.ranked or self.preference is not None

    @property
    def takes_negative_weights(self) -> bool:
        """Whether tokens of negative weight are trained (as unlikelihood terms: ``TokenScores.losses``); the
        ``train`` stage refuses examples with negative weights for a loss that does not take them."""
        return False

    def compute(self, model: Any, batch: Mapping[str, Any]) -> LossOutput:
        raise NotImplementedError

    def collate(self, features: Sequence[Any]) -> Mapping[str, Any]:
        """Optional: the batch for ``compute`` from encoded examples (ranked losses must define it).

        Ranked features are dicts with ``prompt_ids``, ``candidate_ids``, ``candidate_trained`` and
        ``rewards`` (:class:`~misstep.ContinuationFeatures`). Losses that do not define it get the engine's
        padded or packed token batches, or for preference losses :func:`~misstep.collate_continuations`.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class ParsedCall:
    """A tool call found in a reply: the function's name, its arguments, and the id the backend gave it
    (None: the agent numbers it)."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class ParsedReply:
    """An assistant reply for native tool calling: its text without the calls' markup, and the calls.
    ``error`` says why the calls could not be read (``content`` is then the whole reply)."""

    content: str
    calls: tuple[ParsedCall, ...] = ()
    error: str | None = None


class ToolCallParser(Component[O]):
    """Finds the tool calls in a reply's text (native tool calling with models that write calls as text)."""

    kind = "parser"

    def parse(self, text: str) -> ParsedReply:
        """Split ``text`` into content and calls. Never raises: an unreadable call is ``error``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Sampling:
    """Decoding parameters for one generation request."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    num_beams: int = 1  # > 1: beam search (deterministic; temperature and top_p are ignored)


class Backend(Component[O]):
    """Generates the next assistant turn for many conversations at once."""

    kind = "backend"

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling]) -> list[str]:
        raise NotImplementedError

    def generate_n(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
                   n: int) -> list[list[str]]:
        """``n`` replies per conversation: samples with seeds ``seed``, ``seed + 1``, ... by default.

        Backends that can beam search override this to return the ``n`` best beams of one search.
        """
        self.refuse_beam_search(sampling)
        repeated = [
            replace(params, seed=None if params.seed is None else params.seed + k)
            for params in sampling for k in range(n)
        ]
        replies = self.generate([c for c in conversations for _ in range(n)], repeated)
        return [replies[i : i + n] for i in range(0, len(replies), n)]

    def respond(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
                tools: Sequence[ToolSchema], parser: ToolCallParser[Any]) -> list[ParsedReply]:
        """The next assistant turn of each conversation with native tool calling: ``tools`` go to the model
        (chat template or API), and calls it writes as text are read with ``parser``.

        Backends that support ``action_format: native`` override this.
        """
        raise ComponentError(f"the `{self.name}` backend does not support native tool calling; use "
                             "`action_format: react`, or the `hf` or `openai` backend")

    @property
    def model_name(self) -> str:
        return self.name

    def settings(self) -> str:
        """One line on how this backend runs (model, device, precision) for the run log."""
        return self.model_name

    def close(self) -> None:
        """Release the model or connections."""

    def refuse_beam_search(self, sampling: Sequence[Sampling]) -> None:
        """For backends that only sample: a clear error when a request asks for beam search."""
        if any(params.num_beams > 1 for params in sampling):
            raise ComponentError(f"the `{self.name}` backend cannot beam search; use the `hf` backend or set "
                                 "`num_beams: 1`")


class Stage(Component[O]):
    """A step of a recipe. ``run`` writes into ``ctx.dir`` and returns its outputs (paths, metrics)."""

    kind = "stage"

    def run(self, ctx: StageContext) -> dict[str, Any]:
        raise NotImplementedError


KINDS: dict[str, type[Component[Any]]] = {
    "task": TaskLoader,
    "source": TrajectorySource,
    "tool": Tool,
    "verifier": Verifier,
    "reformatter": Reformatter,
    "loss": Loss,
    "backend": Backend,
    "parser": ToolCallParser,
    "stage": Stage,
}
