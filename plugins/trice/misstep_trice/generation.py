"""Getting responses out of backends and models for TRICE's stages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import misstep


def model_spec(ctx: misstep.StageContext, model: str | misstep.ModelSpec | None) -> misstep.ModelSpec:
    """The recipe's model (None), a model spec, or the `model` output of an earlier (train) stage."""
    if model is None:
        return ctx.model
    if isinstance(model, misstep.ModelSpec):
        return model
    return misstep.ModelSpec(path=str(ctx.output(model, "model")), dtype=ctx.model.dtype)


def backend_for(ctx: misstep.StageContext, ref: misstep.BackendRef | None,
                model: misstep.ModelSpec) -> misstep.Backend:
    """The configured backend; without one, ``hf`` running ``model``; a backend whose ``model`` option
    is left empty (such as ``hf``) gets ``model``."""
    if ref is None:
        return ctx.plugins.create("backend", "hf", {"model": model.model_dump()})  # type: ignore[return-value]
    options = ref.options
    if "model" in type(options).model_fields and getattr(options, "model") is None:
        options = options.model_copy(update={"model": model})
    return ctx.plugins.component("backend", ref.use)(options)  # type: ignore[return-value]


def generate(ctx: misstep.StageContext, backend: misstep.Backend, conversations: Sequence[list[misstep.Message]],
             sampling: Sequence[misstep.Sampling], *, batch_size: int, desc: str) -> Iterator[list[str]]:
    """Responses, ``batch_size`` conversations at a time (one list per batch, in order)."""
    starts = range(0, len(conversations), batch_size)
    for start in ctx.progress(starts, desc=desc, total=len(starts)):
        yield backend.generate(conversations[start : start + batch_size], sampling[start : start + batch_size])


def read_tasks(ctx: misstep.StageContext, stage: str) -> list[misstep.Task]:
    return list(misstep.read_jsonl(ctx.output(stage, "tasks"), misstep.Task))
