"""Real components and helpers for the TRICE tests: a backend that answers from a script, a tiny
teacher taught to write tool calls, and ``transformers serve`` on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def teach(folder: Path, pairs: Sequence[tuple[list[misstep.Message], str]], *, steps: int = 150,
          learning_rate: float = 3e-3) -> Path:
    """Fine-tune the model in ``folder`` (all weights, plain torch) until it answers each conversation of
    ``pairs`` with its reply; saved in place. Makes a tiny model into a teacher that writes tool calls."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    rows = []
    for conversation, reply in pairs:
        prompt = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in conversation],
                                               tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids, reply_ids))
    length = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (prompt_ids, reply_ids) in enumerate(rows):
        end = len(prompt_ids) + len(reply_ids)
        ids[row, :end] = torch.tensor(prompt_ids + reply_ids)
        labels[row, len(prompt_ids):end] = torch.tensor(reply_ids)
        mask[row, :end] = 1
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder
