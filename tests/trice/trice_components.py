"""Real components for the TRICE tests: a backend that answers from a script, and the plugin registering it."""

from __future__ import annotations

import misstep


class Scripted(misstep.Backend):
    """Replies by question: the first ``replies`` key found in the last user turn picks the reply;
    a list gives one reply per sample (by the request's seed). Records every conversation it saw."""

    name = "trice-scripted"

    class Options(misstep.Options):
        replies: dict[str, str | list[str]] = {}
        default: str = "I do not know."

    seen: list[str] = []  # last user turn of every request, shared by the instances of a test

    def generate(self, conversations, sampling):
        out = []
        for conversation, params in zip(conversations, sampling, strict=True):
            last = [m.content for m in conversation if m.role == "user"][-1]
            type(self).seen.append(last)
            reply = next((r for key, r in self.options.replies.items() if key in last), self.options.default)
            out.append(reply[(params.seed or 0) % len(reply)] if isinstance(reply, list) else reply)
        return out


class TriceTestPlugin:
    @misstep.hookimpl
    def register_backends(self, register):
        register(Scripted)
