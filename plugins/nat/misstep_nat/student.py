"""The stage ``student``: the model the quickstart fine-tunes, built from scratch in seconds.

A small Llama-style model (:func:`misstep.testing.build_tiny_model`) with a byte-level BPE tokenizer
trained on the text of an earlier stage's trajectories (or tasks) and the NAT hints, so that words
of the task are single tokens and sequences stay short. ``model:`` skips the build and hands on an
existing model instead (an alias, a local folder or a .gguf file), so the same recipe fine-tunes
SmolLM2 or any other model. Later stages use the output with ``init: student`` (train) and
``model: student`` (evaluate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import misstep
from pydantic import Field

from misstep_nat.hints import HINT_PRESETS

CHAT_ROLES = ("system", "user", "assistant")


def record_text(record: misstep.Trajectory | misstep.Task) -> list[str]:
    """The text of a trajectory (every message) or a task (its question)."""
    if isinstance(record, misstep.Trajectory):
        return [message.content for message in record.messages]
    return [record.question]


class Student(misstep.Stage["Student.Options"]):
    """Build a small model from scratch with a tokenizer trained on the task text (or hand on an existing model)."""

    name = "student"

    class Options(misstep.Options):
        corpus: Annotated[str | None, misstep.StageInput()] = Field(
            default=None, description="earlier stage whose `trajectories` (else `tasks`) text trains the tokenizer")
        model: misstep.ModelPath | None = Field(
            default=None, description="use this model instead of building one: an alias (smollm2-135m-instruct), "
            "a model folder or a .gguf file")
        hidden_size: int = Field(default=128, gt=0)
        layers: int = Field(default=4, gt=0)
        heads: int = Field(default=4, gt=0, description="attention heads (must divide hidden_size)")
        vocab_size: int = Field(default=1000, ge=300, description="tokenizer vocabulary (BPE merges on the corpus)")
        context: int = Field(default=1024, gt=0, description="longest sequence in tokens")
        individual_digits: bool = Field(
            default=False, description="split numbers into digits; by default frequent numbers become single "
            "tokens, which a small model learns to copy much sooner")
        template: Literal["chatml", "llama2"] = "chatml"
        seed: int | None = Field(default=None, description="initial weights (default: the recipe's seed)")

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        opts = self.options
        if opts.model is not None:
            folder = misstep.resolve_model(opts.model)
            ctx.log(f"using the existing model {opts.model} ({folder}); nothing built")
            return {"model": folder, "built": False}
        if opts.hidden_size % opts.heads:
            raise misstep.ComponentError(
                f"student: hidden_size {opts.hidden_size} is not divisible by heads {opts.heads}; change one of them")
        folder = ctx.dir / "model"
        if not (folder / "config.json").is_file():  # a finished build is kept on resume
            from misstep.testing import build_tiny_model

            build_tiny_model(folder, template=opts.template, hidden_size=opts.hidden_size, layers=opts.layers,
                             heads=opts.heads, context=opts.context, vocab_size=opts.vocab_size,
                             corpus=self._corpus(ctx), individual_digits=opts.individual_digits,
                             seed=ctx.seed if opts.seed is None else opts.seed)
        parameters = _parameters(folder)
        ctx.log(f"built a {opts.layers}-layer model with hidden size {opts.hidden_size} ({parameters:,} parameters) "
                f"-> {folder}")
        return {"model": folder, "built": True, "parameters": parameters}

    def _corpus(self, ctx: misstep.StageContext) -> list[str] | None:
        """Tokenizer training text: the corpus stage's text, the hints of every preset and the chat roles."""
        stage = self.options.corpus
        if stage is None:
            return None
        records: list[misstep.Trajectory] | list[misstep.Task]
        if ctx.has_output(stage, "trajectories"):
            key, records = "trajectories", list(misstep.read_jsonl(ctx.output(stage, "trajectories"), misstep.Trajectory))
        else:
            key, records = "tasks", ctx.read_tasks(stage)
        lines = [text for record in records for text in record_text(record)]
        if not lines:
            raise misstep.ComponentError(f"student: the {key} of stage {stage!r} hold no text to train a tokenizer on")
        hints = [text for hints in HINT_PRESETS.values() for text in (hints.positive, hints.negative)]
        # NAT puts a hint on every question: count the hints as often as the questions, so they become whole tokens
        return lines + hints * len(records) + list(CHAT_ROLES)


def _parameters(folder: Path) -> int:
    """Weights stored in the folder's safetensors files (tied embeddings counted once)."""
    from math import prod

    from safetensors import safe_open

    total = 0
    for file in folder.glob("*.safetensors"):
        with safe_open(file, "pt") as weights:
            total += sum(prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total
