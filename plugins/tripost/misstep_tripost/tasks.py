"""Task loaders: seeded generators for multistep arithmetic and word sorting, and a loader for the files
of the TriPosT release, each task marked ``seen`` or ``unseen`` (``metadata.difficulty``).

TriPosT trains on the "seen" difficulty and tests on both: multistep arithmetic is seen with 3-4
numbers per innermost group and depth 1-2 (``depth_levels`` [2] or [2, 2]); word sorting is seen with
at most 7 words. Every task carries its gold rationale (``metadata.rationale``).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import misstep
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from misstep_tripost import arithmetic, sorting
from misstep_tripost.checking import complete
from misstep_tripost.text import parse_steps, render_steps

TaskName = Literal["multistep_arithmetic", "word_sorting", "date_understanding"]


def in_split(question: str, split: str, test_share: float) -> bool:
    """Train and test questions never overlap: a question's hash puts it in exactly one split."""
    return (zlib.crc32(question.encode()) % 1000 / 1000 < test_share) == (split == "test")


def task_id(name: str, question: str) -> str:
    """An id made from the question, so that several generators in one stage never collide."""
    return f"{name}-{zlib.crc32(question.encode()):08x}"


class Difficulty(misstep.Options):
    """What counts as the "seen" difficulty (the rest is "unseen")."""

    seen_lengths: list[int] = Field(default_factory=lambda: [3, 4], description="arithmetic: numbers per group")
    seen_depths: list[int] = Field(default_factory=lambda: [1, 2], description="arithmetic: nesting levels")
    seen_max_words: int = Field(default=7, gt=0, description="word sorting: most words")

    def arithmetic(self, length: int, depth: int) -> str:
        return "seen" if length in self.seen_lengths and depth in self.seen_depths else "unseen"

    def sorting(self, words: int) -> str:
        return "seen" if words <= self.seen_max_words else "unseen"


class ArithmeticTasks(misstep.TaskLoader["ArithmeticTasks.Options"]):
    """Seeded multistep arithmetic questions (BIG-bench style) with their scripted gold rationales."""

    name = "tripost-arithmetic"

    class Options(Difficulty):
        count: int = Field(default=100, gt=0)
        lengths: list[int] = Field(default_factory=lambda: [3, 4], min_length=1,
                                   description="numbers per innermost group (one is drawn per question)")
        depths: list[int] = Field(default_factory=lambda: [1, 2], min_length=1,
                                  description="nesting levels: 1 is depth_levels [2], 2 is [2, 2], 3 is [2, 2, 2]")
        seed: int = 0
        split: Literal["train", "test"] = Field(default="train", description="train and test questions never overlap")
        test_share: float = Field(default=0.2, gt=0, lt=1)

    def load(self) -> Iterator[misstep.Task]:
        opts = self.options
        if min(opts.lengths) < 2 or min(opts.depths) < 0:
            raise misstep.ComponentError("tripost-arithmetic: lengths must be at least 2 and depths at least 0")
        rng = random.Random(f"{opts.seed}-{opts.split}")
        seen: set[str] = set()
        while len(seen) < opts.count:
            length, depth = rng.choice(opts.lengths), rng.choice(opts.depths)
            question = arithmetic.generate(rng, length, depth)
            if question in seen or not in_split(question, opts.split, opts.test_share):
                continue
            seen.add(question)
            yield misstep.Task(
                id=task_id("multistep_arithmetic", question), question=question,
                answer=arithmetic.solve(question), dataset="multistep_arithmetic", split=opts.split,
                metadata={"difficulty": opts.arithmetic(length, depth), "length": length, "depth_levels": [2] * depth,
                          "rationale": render_steps(complete(arithmetic.ArithmeticMachine(question)))},
            )


class SortingTasks(misstep.TaskLoader["SortingTasks.Options"]):
    """Seeded word sorting questions from a vocabulary, with their scripted gold rationales."""

    name = "tripost-word-sorting"

    class Options(Difficulty):
        count: int = Field(default=100, gt=0)
        words: list[int] = Field(default_factory=lambda: [2, 3, 4, 5, 6, 7], min_length=1,
                                 description="how many words to sort (one is drawn per question)")
        vocabulary: Annotated[str | None, misstep.InputPath()] = Field(default=None, description="a file with one word per line (default: built in)")
        seed: int = 0
        split: Literal["train", "test"] = "train"
        test_share: float = Field(default=0.2, gt=0, lt=1)

    def _vocabulary(self) -> list[str]:
        if self.options.vocabulary is None:
            return sorting.WORDS
        path = Path(self.options.vocabulary)
        words = sorted({line.strip() for _, line in misstep.text_lines(path) if line.strip()})
        bad = [w for w in words if any(c.isspace() or c == '"' for c in w)]
        if bad:
            raise misstep.DataError(f"words may not hold spaces or double quotes: {bad[0]!r}", path=path)
        return words

    def load(self) -> Iterator[misstep.Task]:
        opts = self.options
        vocabulary = self._vocabulary()
        if max(opts.words) > len(vocabulary) or min(opts.words) < 1:
            raise misstep.ComponentError(f"tripost-word-sorting: word counts must be between 1 and the vocabulary "
                                         f"size ({len(vocabulary)})")
        rng = random.Random(f"{opts.seed}-{opts.split}")
        seen: set[str] = set()
        attempts = 0
        while len(seen) < opts.count:
            attempts += 1
            if attempts > 100 * opts.count:
                raise misstep.ComponentError("tripost-word-sorting: the vocabulary is too small for this many "
                                             "distinct questions; lower `count` or give a larger `vocabulary`")
            question = sorting.generate(rng, rng.choice(opts.words), vocabulary)
            if question in seen or not in_split(question, opts.split, opts.test_share):
                continue
            seen.add(question)
            words = sorting.question_words(question)
            yield misstep.Task(
                id=task_id("word_sorting", question), question=question, answer=sorted(words),
                dataset="word_sorting", split=opts.split,
                metadata={"difficulty": opts.sorting(len(words)), "words": len(words),
                          "rationale": render_steps(complete(sorting.SortingMachine(question)))},
            )


class _Row(BaseModel):
    """A row of a TriPosT ``raw/`` file (rationales of BIG-bench questions)."""

    model_config = ConfigDict(extra="allow")

    question: str
    rationale: str
    correct_answer: str | list[str] | None = None
    correct_choice: str | None = None
    formatted_choices: str | None = None
    meta_data: dict[str, Any] = Field(default_factory=dict)


class _BaselineRow(BaseModel):
    """A row of a TriPosT ``training/`` or ``validation/`` file: the text and, in ``meta_data``, the parts."""

    model_config = ConfigDict(extra="allow")

    text: str
    meta_data: dict[str, Any]


def _guess_task(path: Path) -> str | None:
    for name in ("multistep_arithmetic", "word_sorting", "date_understanding"):
        if path.name.startswith(name):
            return name
    return None


class TriPosTFile(misstep.TaskLoader["TriPosTFile.Options"]):
    """Tasks from a file of the TriPosT release (``raw/`` or ``training/``/``validation/`` JSONL)."""

    name = "tripost-file"

    class Options(Difficulty):
        path: Annotated[str, misstep.InputPath()]
        task: TaskName | None = Field(default=None, description="default: from the file name")
        subset: Literal["train", "validation", "all"] = Field(
            default="all", description="rows whose meta_data.new_split is this (raw files)")
        difficulty: Literal["seen", "unseen", "all"] = "all"
        allow_empty: misstep.AllowEmpty = False

    def load(self) -> Iterator[misstep.Task]:
        opts = self.options
        path = Path(opts.path)
        task = opts.task or _guess_task(path)
        if task is None:
            raise misstep.ComponentError(f"tripost-file: cannot tell the task from the file name {path.name!r}; set "
                                         "`task:` to multistep_arithmetic, word_sorting or date_understanding")
        for number, row in misstep.iter_json_rows(path, allow_empty=opts.allow_empty):
            try:
                record = self._task(task, row, number)
            except (ValidationError, ValueError, KeyError, TypeError) as error:
                raise misstep.DataError(f"not a TriPosT {task} row: {error}", path=path, line=number) from None
            keep_subset = opts.subset == "all" or record.split == opts.subset
            keep_difficulty = opts.difficulty == "all" or record.metadata["difficulty"] == opts.difficulty
            if keep_subset and keep_difficulty:
                yield record

    def _task(self, task: str, data: dict[str, Any], number: int) -> misstep.Task:
        if "text" in data:
            base = _BaselineRow.model_validate(data)
            inner = base.meta_data
            row = _Row(question=inner["question"], rationale=inner["rationale"], correct_answer=inner.get("answer"),
                       meta_data=inner.get("meta_data", {}))
        else:
            row = _Row.model_validate(data)
        question = row.question.strip().removeprefix("Q:").strip()
        meta = row.meta_data
        metadata: dict[str, Any] = {"line": number}
        steps = parse_steps(row.rationale)  # a few Codex rationales are malformed: such a task has no gold
        if task == "multistep_arithmetic":
            answer: Any = int(str(row.correct_answer))
            depth = len(meta.get("depth_levels", []))
            metadata.update(length=meta.get("length"), depth_levels=meta.get("depth_levels"),
                            difficulty=self.options.arithmetic(meta.get("length", 0), depth))
        elif task == "word_sorting":
            answer = sorted(sorting.question_words(question))
            if row.correct_answer is not None and row.correct_answer != answer:
                raise ValueError(f"correct_answer {row.correct_answer} is not the sorted list {answer}")
            fixed = sorting.renumber(steps, question) if steps else None
            metadata.update(words=len(answer), difficulty=self.options.sorting(len(answer)), renumbered=fixed != steps)
            steps = fixed
        else:
            if row.formatted_choices is None or row.correct_choice is None:
                raise ValueError("a date understanding row needs formatted_choices and correct_choice")
            question = f"{question}\nOptions:\n{row.formatted_choices.strip()}"
            answer = row.correct_choice
            metadata.update(difficulty="seen")
        if steps is not None:
            metadata["rationale"] = render_steps(steps)
        split = meta.get("new_split", meta.get("split", ""))
        return misstep.Task(id=f"{task}-{number}", question=question, answer=answer, dataset=task, split=split,
                            metadata=metadata)
