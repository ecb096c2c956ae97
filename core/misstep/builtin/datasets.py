"""Task loaders for the published datasets NAT, TRICE and TriPosT use, in their released formats.

Each reads a JSON Lines file (or a file holding one JSON list) and yields tasks whose id is
``<dataset>-<the row's id>`` (ids such as 0, 1, ... repeat across datasets), or ``<dataset>-<split>-<line>``
for rows without one (GSM8K). Gold answers are normalised: math answers are the number after ``####``
without thousands separators ("#### 1,080" -> "1080"), StrategyQA answers are bools.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from misstep.jsonl import AllowEmpty, iter_json_rows, validate_record
from misstep.builtin.verifiers import parse_number, yes_no
from misstep import components
from misstep.components import InputPath, TaskLoader
from misstep.datamodel import Answer, Task
from misstep.errors import DataError
from misstep.hookspecs import Register, hookimpl


class DatasetTasks(TaskLoader["DatasetTasks.Options"]):
    """Base of the dataset loaders: ``question`` and ``answer`` fields, an optional ``id``, the rest metadata."""

    class Options(components.Options):
        path: Annotated[Path, InputPath()] = Field(description="the dataset file (JSON Lines, or one JSON list)")
        split: str = Field(default="", description="default: the file name without extension ('test')")
        dataset: str = Field(default="", description="name used in ids and reports; default: the loader's name")
        limit: int | None = Field(default=None, gt=0, description="load only the first N tasks")
        allow_empty: AllowEmpty = False

    def gold(self, value: Any) -> Answer:
        """The gold answer from the row's answer field; raise ValueError saying what is wrong."""
        return value

    def load(self) -> Iterator[Task]:
        opts = self.options
        dataset = opts.dataset or self.name
        split = opts.split or opts.path.stem
        for count, (number, row) in enumerate(iter_json_rows(opts.path, allow_empty=opts.allow_empty)):
            if opts.limit is not None and count >= opts.limit:
                return
            missing = [f for f in ("question", "answer") if f not in row]
            if missing:
                raise DataError(f"no field {missing[0]!r} (fields: {', '.join(row)}); is this a {self.name} file? "
                                "Other formats load with `use: jsonl` and a field mapping", path=opts.path, line=number)
            try:
                answer = self.gold(row["answer"])
            except ValueError as error:
                raise DataError(f"{self.name} answer {row['answer']!r}: {error}", path=opts.path,
                                line=number) from None
            row_id = row.get("id")
            yield validate_record(Task, {
                "id": f"{dataset}-{row_id}" if row_id is not None else f"{dataset}-{split}-{number}",
                "question": str(row["question"]).strip(),
                "answer": answer,
                "dataset": dataset,
                "split": split,
                "metadata": self.metadata(row),
            }, path=opts.path, line=number)

    def metadata(self, row: dict[str, Any]) -> dict[str, Any]:
        """What the task keeps of the row besides id, question and answer."""
        return {k: v for k, v in row.items() if k not in {"id", "question", "answer"}}


def final_number(value: Any) -> str:
    """The number after ``####`` (or the whole answer when there is none), without thousands separators."""
    text = str(value).rsplit("####", 1)[-1].strip().replace(",", "")
    if parse_number(text, last=False) is None:
        raise ValueError("expected a number, optionally after '####'")
    return text


class MathTasks(DatasetTasks):
    """Base of the math word-problem loaders: the gold is the final number."""

    def gold(self, value: Any) -> Answer:
        return final_number(value)


class GSM8K(MathTasks):
    """GSM8K: {question, answer}; the answer is a worked solution ending in '#### N' (kept as ``solution``)."""

    name = "gsm8k"

    def metadata(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**super().metadata(row), "solution": row["answer"]}


class SVAMP(MathTasks):
    """SVAMP as NAT uses it: {id, question, answer: '#### N'}."""

    name = "svamp"


class ASDiv(MathTasks):
    """ASDiv's single-answer subset as NAT uses it: {id, question, answer: 'N'}."""

    name = "asdiv"


class MultiArith(MathTasks):
    """MultiArith as NAT uses it: {id, question, answer: '#### N'}."""

    name = "multiarith"


class HotpotQA(DatasetTasks):
    """HotpotQA samples as NAT uses them: a JSON list of {question, answer, type, id}."""

    name = "hotpotqa"

    def gold(self, value: Any) -> Answer:
        if not isinstance(value, (str, list)) or not value:
            raise ValueError("expected a non-empty answer text or a list of aliases")
        return value


class StrategyQA(DatasetTasks):
    """StrategyQA: {id, question, answer: true/false, ...}; the gold is a bool."""

    name = "strategyqa"

    def gold(self, value: Any) -> Answer:
        answer = yes_no(value)
        if answer is None:
            raise ValueError("expected true/false (or yes/no)")
        return answer


LOADERS = (GSM8K, SVAMP, ASDiv, MultiArith, HotpotQA, StrategyQA)


@hookimpl
def register_tasks(register: Register) -> None:
    for loader in LOADERS:
        register(loader)
