"""Generation backends: in-process transformers (``hf``) and OpenAI-compatible endpoints (``openai``).

The backend classes live in their own modules so that importing this package needs neither torch nor
the ``openai`` client; :mod:`misstep.builtin.backends` registers them.
"""

from __future__ import annotations

from collections.abc import Iterable


def cut_at_stop(text: str, stops: Iterable[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string (the stop string itself removed)."""
    end = len(text)
    for stop in stops:
        if stop:
            index = text.find(stop)
            if index != -1:
                end = min(end, index)
    return text[:end]
