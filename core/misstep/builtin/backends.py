"""Built-in generation backends: ``hf`` (in-process transformers) and ``openai`` (compatible endpoints)."""

from __future__ import annotations

from misstep.backends.hf import HFBackend
from misstep.backends.openai_compat import OpenAIBackend
from misstep.hookspecs import hookimpl


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    register(HFBackend)
    register(OpenAIBackend)
