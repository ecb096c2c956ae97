"""Helpers for tests: tiny models trained here in seconds, and stage contexts to call components by hand.

``build_tiny_model(folder)`` writes a complete model folder (config, weights, tokenizer with a chat
template: ChatML, Llama-2, or ``hermes``, a Hermes/Qwen-style template that renders tools and tool calls)
that every misstep component loads like any other local model; ``teach(folder, pairs)``
fine-tunes it to give chosen replies (text or tool calls); ``served(folder, log)``
runs ``transformers serve`` on it for the ``openai`` backend; ``stage_context(folder, plugins)`` is
what a stage or source sees inside a run. Plugin authors use them in their own tests:
nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from misstep.context import Run, StageContext
from misstep.datamodel import Example, Message, ToolSchema
from misstep.errors import MisstepError
from misstep.recipe import Recipe, StageRef
from misstep.runner import serialise
from misstep.specs import ModelSpec
from misstep.training.encode import encode_example

if TYPE_CHECKING:
    from misstep.plugins import Plugins

ChatTemplate = Literal["chatml", "llama2", "hermes"]

SPECIAL_TOKENS = {
    "chatml": {"bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|pad|>", "extra": ["<|im_start|>"]},
    "llama2": {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "extra": []},
    "hermes": {"bos": "<|endoftext|>", "eos": "<|im_end|>", "pad": "<|pad|>", "extra": ["<|im_start|>"]},
}
TOOL_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
"""Added (not special) tokens of the ``hermes`` tokenizer, as Qwen's: a call is text the reply keeps."""

# Chat templates in the two families misstep must handle: ChatML (SmolLM2, Qwen) and Llama-2-chat
# ([INST] ... [/INST], a system prompt folded into the first user turn). Neither has generation markers.
CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}"
        "{% set system = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}"
        "{% set messages = messages[1:] %}"
        "{% else %}{% set system = '' %}{% endif %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'assistant' %}"
        "{{ ' ' + message['content'] + ' </s>' }}"
        "{% else %}"
        "{{ '<s>[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
        "{% endif %}"
        "{% endfor %}"
    ),
    # Hermes / Qwen 2.5 style: the tools' schemas in the system turn, calls as <tool_call>{json}</tool_call>
    # in the assistant turn, consecutive tool results in one user turn as <tool_response> blocks.
    "hermes": (
        "{%- if tools %}"
        "{{- '<|im_start|>system\n' }}"
        "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\n\n' }}{%- endif %}"
        "{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided "
        "with function signatures within <tools></tools> XML tags:\n<tools>' }}"
        "{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}"
        "{{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
        "<args-json-object>}\n</tool_call><|im_end|>\n' }}"
        "{%- elif messages[0]['role'] == 'system' %}"
        "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
        "{%- endif %}"
        "{%- for message in messages %}"
        "{%- if message['role'] == 'system' and loop.first %}"
        "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
        "{{- '<|im_start|>assistant' }}"
        "{%- if message['content'] %}{{- '\n' + message['content'] }}{%- endif %}"
        "{%- for call in message['tool_calls'] %}"
        "{%- set function = call['function'] if call['function'] is defined else call %}"
        "{{- '\n<tool_call>\n{\"name\": \"' + function['name'] + '\", \"arguments\": ' }}"
        "{%- if function['arguments'] is string %}{{- function['arguments'] }}"
        "{%- else %}{{- function['arguments'] | tojson }}{%- endif %}"
        "{{- '}\n</tool_call>' }}"
        "{%- endfor %}"
        "{{- '<|im_end|>\n' }}"
        "{%- elif message['role'] == 'tool' %}"
        "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
        "{{- '\n<tool_response>\n' + message['content'] + '\n</tool_response>' }}"
        "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}"
        "{%- else %}"
        "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
    ),
}

# How `transformers serve` reads the hermes template's replies (its response-template format, as it ships for
# Qwen): with it, a served tiny model returns calls as `tool_calls`; without it, as text content.
RESPONSE_TEMPLATES = {
    "hermes": {
        "defaults": {"role": "assistant"},
        "start_anchor": "<|im_start|>assistant\n",
        "fields": {
            "tool_calls": {"open_pattern": r"\s*<tool_call>", "close": "</tool_call>", "repeats": True,
                           "content": "json", "transform": {"type": "function", "function": "{content}"}},
            "content": {"close_pattern": r"\s*<\|im_end\|>", "content": "text"},
        },
    },
}

_TOOL_CORPUS = """\
<tool_call>
{"name": "calculate", "arguments": {"expression": "3 * 12 - 5"}}
</tool_call>
<tool_response>
31
</tool_response>
{"type": "function", "function": {"name": "calculate", "description": "Evaluate an arithmetic expression.",
"parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
# Tools
You may call one or more functions to assist with the user query.
You are provided with function signatures within <tools></tools> XML tags:
For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
{"name": <function-name>, "arguments": <args-json-object>}
"""

_CORPUS = """\
Solve a question answering task with interleaving Thought, Action, Observation steps.
Thought can reason about the current situation, and Action can be two types:
(1) Calculator[formula], which calculates the formula and returns the result.
(2) Finish[answer], which returns the answer and finishes the task.
Question: Tom has 3 bags with 12 apples in each bag. He eats 5 apples. How many apples are left?
Thought: I need to multiply 3 by 12 and then subtract 5.
Action: Calculator[3 * 12 - 5]
Observation: 31
Thought: The answer is 31.
Action: Finish[31]
Question: A shop sold 48 pens on Monday and half as many on Tuesday. How many pens in total?
Thought: Tuesday is 48 / 2 = 24, total is 48 + 24.
Action: Calculator[48 + 48 / 2]
Observation: 72
Action: Finish[72]
user assistant system tool Answer the question. Is the answer yes or no? What is the capital of France? Paris is the capital.
Search[query] returns passages. Observation: #1: The river flows north. #2: It was built in 1889.
Feedback: In step 2, the part "7 + 8 = 16" is incorrect. This is because 7 + 8 = 15.
Up to step 1, everything looks good. Great job! The final answer is correct.
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 40 50 60 70 80 90 100 1000
+ - * / = ( ) [ ] , . ? ! : ; ' " % $ # @ & _ < > { } | ~ ^ \\ the a an of to in and is was he she they
"""


def train_tokenizer(folder: Path, *, template: ChatTemplate = "chatml", vocab_size: int = 400,
                    corpus: Iterable[str] | None = None, individual_digits: bool = True) -> Path:
    """Train a byte-level BPE tokenizer and save it with a chat template. Digits are split one by one,
    or with ``individual_digits=False`` kept in runs that BPE may merge (frequent numbers become one token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = SPECIAL_TOKENS[template]
    tokens = [special["pad"], special["bos"], special["eos"], *special["extra"]]
    if corpus is None:
        corpus = (_CORPUS + (_TOOL_CORPUS if template == "hermes" else "")).splitlines()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=individual_digits), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=special["bos"], eos_token=special["eos"], pad_token=special["pad"],
        additional_special_tokens=special["extra"] or None,
    )
    if template == "hermes":
        fast.add_tokens(TOOL_TOKENS)
        fast.response_template = RESPONSE_TEMPLATES[template]
    fast.chat_template = CHAT_TEMPLATES[template]
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return folder


def build_tiny_model(folder: Path | str, *, template: ChatTemplate = "chatml", hidden_size: int = 32,
                     layers: int = 2, heads: int = 4, context: int = 1024, vocab_size: int = 400,
                     corpus: Iterable[str] | None = None, individual_digits: bool = True, seed: int = 0) -> Path:
    """Write a randomly initialised Llama-style model and its tokenizer to ``folder`` and return it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    train_tokenizer(folder, template=template, vocab_size=vocab_size, corpus=corpus,
                    individual_digits=individual_digits)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=context, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    (folder / "misstep-tiny.json").write_text(json.dumps({"template": template, "seed": seed}) + "\n")
    return folder


def build_tiny_tools_model(folder: Path | str) -> Path:
    """A tiny model with the ``hermes`` template (tools and tool calls), sized to learn tool calls in a test."""
    return build_tiny_model(folder, template="hermes", vocab_size=800, hidden_size=64)


def teach(folder: Path, pairs: Sequence[tuple[Sequence[Message], str | Message]], *, tools: Sequence[ToolSchema] = (),
          steps: int = 150, learning_rate: float = 3e-3) -> Path:
    """Fine-tune the model in ``folder`` (all weights, plain torch) until it answers each conversation of
    ``pairs`` with its reply (text, or an assistant message with tool calls; ``tools`` go to the chat
    template); saved in place. The replies are encoded and padded as the train stage does it.
    Makes a tiny random model answer the way a test needs (a teacher that writes tool calls, a student
    with varied replies, an agent that calls tools natively)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from misstep.training.packing import collate_padded

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    examples = [Example(id=str(number), tools=list(tools), messages=[
                    *(m.model_copy(update={"train": False}) for m in conversation),
                    reply if isinstance(reply, Message) else Message(role="assistant", content=reply)])
                for number, (conversation, reply) in enumerate(pairs)]
    batch = collate_padded([encode_example(e, tokenizer, model.config.max_position_embeddings) for e in examples],
                           tokenizer.pad_token_id)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(folder: Path | str, log: Path, *, timeout: float = 120) -> Iterator[str]:
    """Run ``transformers serve`` of ``folder`` on 127.0.0.1 (CPU) and yield its base URL (``.../v1``).

    The server's output goes to ``log``; it is stopped on exit. Raises :class:`MisstepError` when the
    ``transformers`` command is missing (``pip install 'misstep[serve]'``) or the server does not come up.
    """
    command = shutil.which("transformers")
    if command is None:
        raise MisstepError("the `transformers` command is not installed (pip install 'misstep[serve]')")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [command, "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=output, stderr=subprocess.STDOUT, env=env,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise MisstepError(f"`transformers serve` did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stage_context(folder: Path | str, plugins: Plugins, *, outputs: Mapping[str, Mapping[str, Any]] | None = None,
                  model: ModelSpec | None = None, name: str = "test", seed: int = 0) -> StageContext:
    """The context of a stage ``name`` running quietly in the run folder ``folder``, after earlier stages
    that returned ``outputs`` (stage -> its outputs; paths as :class:`Path`): call a stage's ``run``, a
    source's ``trajectories`` or anything else that takes a ``ctx`` directly in a test."""
    root = Path(folder)
    recipe = Recipe(name="test", seed=seed, model=model or ModelSpec(), stages=[StageRef(use=name)])
    earlier = {stage: serialise(dict(values), root) for stage, values in (outputs or {}).items()}
    run = Run(recipe=recipe, dir=root, plugins=plugins, outputs=earlier, quiet=True)
    (root / name).mkdir(parents=True, exist_ok=True)
    return StageContext(run=run, name=name, dir=root / name, spec=recipe.stages[0])
