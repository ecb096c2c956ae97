"""Getting responses out of backends and models for TRICE's stages."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import misstep


def generate(ctx: misstep.StageContext, backend: misstep.Backend, conversations: Sequence[list[misstep.Message]],
             sampling: Sequence[misstep.Sampling], *, batch_size: int, desc: str, n: int = 1) -> Iterator[list[str]]:
    """Responses, ``batch_size`` conversations at a time: one list per batch, ``n`` per conversation, in order."""
    starts = range(0, len(conversations), batch_size)
    for start in ctx.progress(starts, desc=desc, total=len(starts)):
        replies = backend.generate_n(conversations[start : start + batch_size], sampling[start : start + batch_size], n)
        yield [text for group in replies for text in group]

