"""Built-in generation backends: ``hf`` (in-process transformers) and ``openai`` (compatible endpoints)."""

from __future__ import annotations

from misstep.backends.hf import HFBackend
from misstep.backends.openai_compat import OpenAIBackend
from misstep.hookspecs import Register, hookimpl


@hookimpl
def register_backends(register: Register) -> None:
    register(HFBackend)
    register(OpenAIBackend)
