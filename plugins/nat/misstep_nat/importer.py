"""The trajectory source ``nat-trajectories``: trajectories released by the NAT authors, as misstep records.

A NAT file is a JSON list of ``{"id", "source": "<temperature>", "info": {"reward", "pred", "gt", ...},
"conversations": [{"role", "content", "loss"}, ...]}``; the conversation starts at the first assistant
turn. With ``tasks:`` (the question file, e.g. ``{use: strategyqa, path: train.jsonl}``) each trajectory
gets its prompt rendered from the task's question; without, ``prompt_len`` is 0 and a reformatter with
``prompt:`` and the tasks rebuilds it. The label is NAT's ``reward``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import misstep
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class NatTurn(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    loss: bool


class NatInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    reward: bool
    pred: str | None = None
    gt: Any = None


class NatTrajectory(BaseModel):
    """One item of a NAT trajectory file."""

    id: str | int
    source: float = Field(description="the sampling temperature, written as a string ('0.5')")
    info: NatInfo
    conversations: list[NatTurn]


def read_nat_file(path: Path, *, allow_empty: bool = False) -> list[NatTrajectory]:
    """The items of a NAT trajectory file; DataError names the file and the bad item."""
    items = misstep.read_json(path)
    if not isinstance(items, list):
        raise misstep.DataError("expected a JSON list of trajectories (NAT's release format)", path=path)
    records = []
    for index, item in enumerate(misstep.nonempty(items, path, allow_empty=allow_empty)):
        try:
            records.append(NatTrajectory.model_validate(item))
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise misstep.DataError(f"item {index}: {where}: {problem['msg']}", path=path) from None
    return records


class NatTrajectories(misstep.TrajectorySource["NatTrajectories.Options"]):
    """Trajectories in NAT's released format (e.g. strategyqa_gpt-3.5_positive.json), labelled by their reward."""

    name = "nat-trajectories"

    class Options(misstep.Options):
        paths: Annotated[list[Path], misstep.InputPath()] = Field(min_length=1, description="NAT trajectory files (JSON lists)")
        dataset: str = Field(default="strategyqa", description="task ids are '<dataset>-<id>', as the loaders make them")
        tasks: misstep.TaskRef | None = Field(
            default=None, description="the questions, to render each prompt (e.g. {use: strategyqa, path: train.jsonl})")
        prompt: misstep.PromptTemplate = Field(default_factory=lambda: misstep.PromptTemplate(preset="strategyqa"))
        model: str = Field(default="gpt-3.5-turbo", description="recorded as the trajectories' model")
        allow_empty: misstep.AllowEmpty = False

    def trajectories(self, ctx: Any = None) -> Iterator[misstep.Trajectory]:
        opts = self.options
        questions = {task.id: task.question for task in opts.tasks.build().load()} if opts.tasks else None
        samples: Counter[tuple[str, float]] = Counter()
        for path in opts.paths:
            for index, item in enumerate(read_nat_file(path, allow_empty=opts.allow_empty)):
                task_id = f"{opts.dataset}-{item.id}"
                prompt: list[misstep.Message] = []
                if questions is not None:
                    if task_id not in questions:
                        raise misstep.DataError(f"item {index}: no task {task_id!r} among the `tasks:` questions",
                                                path=path)
                    prompt = opts.prompt.render(questions[task_id])
                sample = samples[task_id, item.source]
                samples[task_id, item.source] += 1
                turns = [misstep.Message(role=turn.role, content=turn.content,
                                         train=None if turn.loss == (turn.role == "assistant") else turn.loss)
                         for turn in item.conversations]
                yield misstep.Trajectory(
                    id=f"{task_id}#t{item.source:g}-s{sample}",
                    task_id=task_id,
                    messages=[*prompt, *turns],
                    prompt_len=len(prompt),
                    verdict=misstep.Verdict(correct=item.info.reward, score=float(item.info.reward),
                                            prediction=item.info.pred),
                    provenance=misstep.Provenance(source=self.name, model=opts.model, temperature=item.source,
                                                  sample=sample),
                    metadata={"dataset": opts.dataset, "file": path.name, "gold": item.info.gt,
                              "turns": sum(turn.role == "assistant" for turn in item.conversations)},
                )
