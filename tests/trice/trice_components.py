"""Real components and helpers for the TRICE tests: a backend that answers from a script, a tiny
teacher taught to write tool calls, and ``transformers serve`` on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(folder: Path, log: Path) -> Iterator[str]:
    """``transformers serve`` of ``folder`` on 127.0.0.1; yields the base URL (``.../v1``).

    Skips the test when the command is missing or the server does not come up.
    """
    command = shutil.which("transformers")
    if command is None:
        pytest.skip("the `transformers` command is not installed (pip install 'misstep[serve]')")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [command, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=output, stderr=subprocess.STDOUT, env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"`transformers serve` did not start: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
