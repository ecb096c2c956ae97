"""The ``hf`` backend: an in-process transformers model (local folder, GGUF file or alias).

Requests with the same sampling settings share one ``generate`` call (left padding, KV cache, stop
strings that end each row on its own; sampling or beam search, one or several replies per request);
the model loads on first use, in bf16 where the GPU or CPU computes it natively
(:mod:`misstep.precision`), else in float32. A conversation that ends with an assistant message is
continued: the reply is the rest of that message. Native tool calling renders the tools' schemas with
the chat template's ``tools=`` and reads the calls in the reply with the agent's tool-call parser.
"""

from __future__ import annotations

import warnings
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import Field

from misstep.backends import cut_at_stop
from misstep.components import Backend, Options, ParsedReply, Sampling, ToolCallParser
from misstep.datamodel import Message, ToolSchema
from misstep.errors import ComponentError
from misstep.precision import Choice, choose, from_dtype
from misstep.specs import ModelSpec
from misstep.training.encode import chat_messages


def prompt_text(tokenizer: Any, conversation: Sequence[Message], tools: Sequence[ToolSchema] = ()) -> str:
    """The chat template's text to generate from (with ``tools=``): a new assistant turn, or, when the
    conversation ends with an assistant message, the rest of that message (a prefill)."""
    prefill = bool(conversation) and conversation[-1].role == "assistant"
    return tokenizer.apply_chat_template(chat_messages(conversation), tools=list(tools) or None, tokenize=False,
                                         add_generation_prompt=not prefill, continue_final_message=prefill)


class HFBackend(Backend["HFBackend.Options"]):
    """Batched generation with a transformers model loaded in this process."""

    name = "hf"

    class Options(Options):
        model: ModelSpec | None = Field(default=None, description="default: the recipe's model")
        device: str = Field(default="auto", description="auto (cuda when available), cpu, cuda, cuda:1, ...")
        batch_size: int = Field(default=64, gt=0, description="most conversations in one generate call")

    def __init__(self, options: HFBackend.Options | None = None) -> None:
        super().__init__(options)
        self._model: Any = None
        self._tokenizer: Any = None

    @property
    def spec(self) -> ModelSpec:
        return self.options.model or ModelSpec()

    @property
    def model_name(self) -> str:
        return self.spec.path

    @property
    def device(self) -> str:
        """The device generation runs on (``auto``: cuda when available)."""
        if self.options.device != "auto":
            return self.options.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def precision(self) -> Choice:
        """The weights' precision: the model spec's ``dtype``; ``auto`` is bf16 where the device has it natively."""
        return choose(from_dtype(self.spec.dtype), cuda=self.device.startswith("cuda"))

    def settings(self) -> str:
        return f"{self.model_name} on {self.device} in {self.precision}"

    def load(self) -> tuple[Any, Any]:
        """The model and tokenizer (left padding), loaded on the first call."""
        if self._model is None:
            from misstep.models import load_model, load_tokenizer

            device = self.device
            spec = self.spec.model_copy(update={"dtype": self.precision.dtype_name})
            tokenizer = load_tokenizer(spec)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = load_model(spec).to(device)
            model.eval()
            self._model, self._tokenizer = model, tokenizer
        return self._model, self._tokenizer

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling]) -> list[str]:
        return [replies[0] for replies in self.generate_n(conversations, sampling, 1)]

    def respond(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
                tools: Sequence[ToolSchema], parser: ToolCallParser[Any]) -> list[ParsedReply]:
        return [parser.parse(replies[0]) for replies in self._replies(conversations, sampling, 1, tools)]

    def generate_n(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
                   n: int) -> list[list[str]]:
        """``n`` replies per conversation from one ``generate`` call per chunk: samples, or the ``n`` best beams."""
        return self._replies(conversations, sampling, n, ())

    def _replies(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling], n: int,
                 tools: Sequence[ToolSchema]) -> list[list[str]]:
        if len(conversations) != len(sampling):
            raise ComponentError(f"{len(conversations)} conversations but {len(sampling)} sampling settings")
        for params in sampling:
            if params.num_beams > 1 and n > params.num_beams:
                raise ComponentError(f"{n} replies asked of a beam search {params.num_beams} wide; "
                                     "raise `num_beams:` to at least the number of replies")
        model, tokenizer = self.load()
        prompts = [prompt_text(tokenizer, conversation, tools) for conversation in conversations]
        ids: list[list[int]] = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
        limit = getattr(model.config, "max_position_embeddings", None)
        groups: dict[Sampling, list[int]] = defaultdict(list)  # settings but the seed -> requests
        too_long = 0
        for index, params in enumerate(sampling):
            if limit is not None and len(ids[index]) >= limit:
                too_long += 1
            else:
                groups[replace(params, seed=None)].append(index)
        if too_long:
            warnings.warn(f"{too_long} conversations fill the context of {self.model_name!r} ({limit} tokens); they "
                          "get an empty reply (an action error). Lower `max_turns:` or `max_new_tokens:`", stacklevel=2)
        replies = [[""] * n for _ in prompts]
        for indices in groups.values():
            indices.sort(key=lambda i: len(ids[i]))  # similar lengths together: less padding
            params = sampling[indices[0]]
            size = max(1, self.options.batch_size // max(n, params.num_beams))  # rows in flight, beams included
            for start in range(0, len(indices), size):
                chunk = indices[start : start + size]
                texts = self._generate([ids[i] for i in chunk], params, [sampling[i].seed for i in chunk], n)
                for row, index in enumerate(chunk):
                    replies[index] = texts[row * n : (row + 1) * n]
        return replies

    def _generate(self, ids: list[list[int]], params: Sampling, seeds: list[int | None], n: int) -> list[str]:
        """One ``generate`` call for tokenized prompts that share ``params``: ``n`` replies per prompt, in order."""
        import torch
        from transformers import GenerationConfig

        model, tokenizer = self.load()
        encoded = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        length = encoded["input_ids"].shape[1]
        limit = getattr(model.config, "max_position_embeddings", None)
        sample = params.temperature > 0 and params.num_beams == 1
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens if limit is None else min(params.max_new_tokens, limit - length),
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=None,
            num_beams=params.num_beams,
            num_return_sequences=n,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
            stop_strings=list(params.stop) or None,
        )
        known = [seed for seed in seeds if seed is not None]
        if known:
            torch.manual_seed(zlib.crc32(" ".join(map(str, known)).encode()))
        encoded = encoded.to(model.device)
        with torch.inference_mode():
            output = model.generate(**encoded, generation_config=config, tokenizer=tokenizer)
        texts = tokenizer.batch_decode(output[:, length:], skip_special_tokens=True)
        return [cut_at_stop(text, params.stop) for text in texts]

    def close(self) -> None:
        if self._model is not None:
            import torch

            self._model = self._tokenizer = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
