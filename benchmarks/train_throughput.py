"""Trained tokens per second: misstep's engine (packed) vs TRL's SFTTrainer vs a padded transformers Trainer.

All three train the same model on the same NAT-style ReAct conversations (instruction, acknowledgement,
question, then Thought/Action turns and Observations), with the same batch size, batches, optimiser and
precision, for one epoch; only the assistant turns (with their end-of-turn token) are trained, never the
acknowledgement. Each method runs in a fresh process, so peak memory is its own. Prints a table::

    python benchmarks/train_throughput.py --model tiny --examples 96 --batch-size 8                 # CPU
    python benchmarks/train_throughput.py --model smollm2-135m-instruct --examples 2048 \\
        --batch-size 32 --data gsm8k:/path/to/gsm8k/train.jsonl                                      # GPU

Methods:
- ``misstep``: the Trainer, ``sft`` loss and collator of ``misstep.training.engine`` as the ``train``
  stage builds them with packing on (``packing: auto`` on a GPU): examples encoded by
  ``misstep.training.encode``, packed padding-free by ``misstep.training.packing.collate_packed``: each
  batch in one row where sdpa attends one sequence at a time (on a CPU), else in rows as long as its
  longest example (``misstep.training.engine.collator``). ``--rows`` replaces the engine's row budget: ``longest`` (rows as long as the batch's longest
  example), ``one`` (one row per batch, the layout for flash attention) or a number of tokens.
- ``trl``: ``trl.SFTTrainer`` with ``assistant_only_loss=True`` and its default (padded) collator. TRL
  needs ``{% generation %}`` markers in the chat template to find assistant tokens; it gets the model's
  ChatML template with markers around the trained turns (same text, same trained tokens).
- ``trainer``: a plain ``transformers.Trainer`` with the model's own loss and ``DataCollatorForSeq2Seq``
  right padding, on the same encoded examples as misstep.

``--lora R`` trains a LoRA adapter of rank R (alpha 2R, no dropout) on all linear layers in every
method instead of the full weights. Each method runs with its own default gradient checkpointing
(TRL's SFTConfig turns it on, the Trainer and misstep's ``train`` stage do not) unless
``--gradient-checkpointing off|selective|full`` sets one for all (``misstep.training.checkpointing``);
the table says which each ran with. ``--chunk-size`` is misstep's ``sft`` option (trained tokens per
chunk of the output layer and cross-entropy). ``--precision auto`` is bf16 autocast where the GPU or
CPU computes in bf16 natively, else fp32 (``misstep.precision.choose``).

Peak memory is each method's own, measured in its process: on CPU the peak resident set (RSS: tensors
and everything else the process holds), on GPU ``torch.cuda.max_memory_allocated`` during training.

Throughput is measured after ``--warmup`` steps, over the remaining steps, with the GPU synchronised at
each step end; on CPU, seconds are the training process's CPU time (set OMP_NUM_THREADS=1), because
wall time on a shared CPU mostly measures the neighbours. Trained tokens are loss-bearing labels; all
tokens are the examples' tokens (no padding). ``--profile DIR`` runs torch.profiler over the timed steps
and writes each method's operators (by input shapes, slowest first) to ``DIR/METHOD.txt``.

Data: ``arithmetic`` (default) are misstep-nat's arithmetic word problems solved by its scripted teacher
(1-2 calculator steps); ``gsm8k:PATH`` turns GSM8K training solutions into ReAct trajectories, one
calculator step per ``<<expr=result>>`` annotation (at most 7), as in docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import misstep
from misstep.models import load_tokenizer, resolve_model
from misstep.training import checkpointing
from misstep.training.output_layer import DEFAULT_CHUNK_SIZE

METHODS = ("misstep", "trl", "trainer")
LABELS = {"misstep": "misstep engine, packed", "trl": "TRL SFTTrainer, assistant-only loss",
          "trainer": "transformers Trainer, padded"}


# --- data ------------------------------------------------------------------------------------------

def conversation(question: str, steps: list[tuple[str, str, str]], answer: str) -> list[misstep.Message]:
    """NAT's math prompt, then one Thought/calculate turn per (thought, expression, result), then finish."""
    messages = misstep.PromptTemplate(preset="math").render(question)
    for thought, expression, result in steps:
        step = f"Thought: {thought}\nAction: calculate[{expression}]"
        messages.append(misstep.Message(role="assistant", content=step))
        messages.append(misstep.Message(role="user", content=f"Observation: {result}"))
    finish = f"Thought: The answer is {answer}.\nAction: finish[{answer}]"
    messages.append(misstep.Message(role="assistant", content=finish))
    return messages


def calculate(expression: str) -> str:
    """``x op y`` of the scripted teacher (operands may be parenthesised), as a calculator prints it."""
    left, op, right = expression.split(" ")
    x, y = Fraction(left.strip("()")), Fraction(right.strip("()"))
    value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[op]
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def arithmetic_examples(count: int, seed: int) -> list[misstep.Example]:
    plugins = misstep.get_plugins()
    tasks = plugins.create("task", "arithmetic-word-problems", {"count": count, "seed": seed}).load()
    teacher = plugins.create("backend", "scripted-teacher", {"error_rate": 0.0, "error_slope": 0.0})
    examples = []
    for task in tasks:
        messages = misstep.PromptTemplate(preset="math").render(task.question)
        while True:
            turn = teacher.generate([messages], [misstep.Sampling()])[0]
            messages.append(misstep.Message(role="assistant", content=turn))
            action = re.search(r"calculate\[(.*)\]", turn)
            if not action:
                break
            messages.append(misstep.Message(role="user", content=f"Observation: {calculate(action.group(1))}"))
        examples.append(misstep.Example(id=task.id, messages=messages))
    return examples


def gsm8k_examples(path: Path, count: int) -> list[misstep.Example]:
    examples = []
    for index, line in enumerate(path.read_text().splitlines()):
        row = json.loads(line)
        steps = []
        for line in row["answer"].splitlines()[:-1]:
            for prefix, expression, result in re.findall(r"([^<]*)<<([^=<>]+)=([^<>]+)>>", line):
                said = prefix.strip().rstrip("=$ ").strip()
                steps.append((f"{said}. I need to calculate {expression}." if said else
                              f"I need to calculate {expression}.", expression, result))
        if 0 < len(steps) <= 7:
            answer = row["answer"].rsplit("####", 1)[-1].strip()
            examples.append(misstep.Example(id=f"gsm8k-{index}", messages=conversation(row["question"], steps, answer)))
        if len(examples) == count:
            break
    return examples


# --- measuring -------------------------------------------------------------------------------------

def length(feature: Any) -> int:
    return len(feature["input_ids"] if isinstance(feature, Mapping) else feature.input_ids)


class Counting:
    """Wraps a collator and records each batch's trained and total (non-padding) tokens, in order."""

    def __init__(self, collate: Any) -> None:
        self.collate = collate
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features: list[Any]) -> dict[str, Any]:
        batch = self.collate(features)
        trained = int((batch["labels"][..., 1:] != -100).sum())
        self.batches.append((trained, sum(length(f) for f in features)))
        return batch


def synchronise() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def now() -> float:
    """Wall time with a GPU; on CPU this process's CPU time (the CPU is often shared: wall time is noise)."""
    import torch

    return time.perf_counter() if torch.cuda.is_available() else time.process_time()


def step_clock() -> Any:
    """A TrainerCallback that notes the time (:func:`now`) at the end of every optimiser step."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            synchronise()
            self.times.append(now())

    return Clock()


def step_profiler(warmup: int, path: Path) -> Any:
    """A TrainerCallback that runs torch.profiler over the steps after the first ``warmup`` and writes its
    operators, by input shapes and by self time, to ``path``."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    class Profiler(TrainerCallback):
        def __init__(self) -> None:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.profiler = profile(activities=activities, record_shapes=True)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == warmup:
                self.profiler.start()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.profiler.stop()
            averages = self.profiler.key_averages(group_by_input_shape=True)
            key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            path.write_text(averages.table(sort_by=key, row_limit=40, max_name_column_width=60,
                                           max_shapes_column_width=80))

    return Profiler()


# --- the three trainers ----------------------------------------------------------------------------

def training_args(args: argparse.Namespace, out: Path, steps: int, cls: Any = None, **extra: Any) -> Any:
    """The same TrainingArguments (or ``cls``, e.g. TRL's SFTConfig, with ``extra`` fields) for every method."""
    import torch
    from transformers import TrainingArguments

    from misstep.precision import choose

    bf16 = choose(args.precision, cuda=torch.cuda.is_available()).precision == "bf16"
    return (cls or TrainingArguments)(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, num_train_epochs=1,
        learning_rate=args.learning_rate, lr_scheduler_type="constant", weight_decay=0.0, bf16=bf16,
        logging_steps=steps, save_strategy="no", report_to="none", disable_tqdm=True, seed=args.seed,
        data_seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(), **extra,
    )


def checkpointing_of(args: argparse.Namespace, method: str) -> str:
    """The gradient checkpointing ``method`` trains with: ``--gradient-checkpointing``, or by default what the
    method does by default (misstep: the ``train`` stage's default; TRL's SFTConfig: on; the Trainer: off)."""
    if args.gradient_checkpointing != "default":
        return args.gradient_checkpointing
    if method == "misstep":
        from misstep.builtin.train import TrainStage

        default = TrainStage.Options.model_fields["gradient_checkpointing"].default
        return "full" if default is True else default or "off"
    return "full (TRL's default)" if method == "trl" else "off"


def engine_trainer(args: argparse.Namespace, model: Any, tokenizer: Any, examples: list[misstep.Example],
                   out: Path) -> Any:
    """misstep's Trainer, loss and collator as the ``train`` stage builds them (packing on)."""
    from misstep.training.encode import encode_example
    from misstep.training.engine import _trainer_class, collator
    from misstep.training.packing import collate_packed

    loss = misstep.get_plugins().create("loss", "sft", {"chunk_size": args.chunk_size})
    arguments = training_args(args, out, -(-len(examples) // args.batch_size))
    collate: Any = collator(loss, tokenizer.pad_token_id, True, model, arguments.device)
    if args.rows != "engine":
        def collate(batch: list[Any]) -> dict[str, Any]:
            budget = {"longest": None, "one": sum(len(f.input_ids) for f in batch)}.get(args.rows, args.rows)
            return collate_packed(batch, max_tokens=budget and int(budget), pad_id=tokenizer.pad_token_id)
    features = [encode_example(e, tokenizer, args.max_length) for e in examples]
    return _trainer_class()(model=model, args=arguments, train_dataset=features, data_collator=Counting(collate),
                            loss=loss)


def padded_trainer(args: argparse.Namespace, model: Any, tokenizer: Any, examples: list[misstep.Example],
                   out: Path) -> Any:
    from transformers import DataCollatorForSeq2Seq, Trainer

    from misstep.training.encode import encode_example

    features = []
    for example in examples:
        encoded = encode_example(example, tokenizer, args.max_length)
        features.append({"input_ids": encoded.input_ids, "attention_mask": [1] * len(encoded.input_ids),
                         "labels": encoded.labels})
    collate = Counting(DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100,
                                              return_tensors="pt"))
    steps = -(-len(features) // args.batch_size)
    return Trainer(model=model, args=training_args(args, out, steps), train_dataset=features, data_collator=collate)


CHATML_TURN = re.compile(
    r"\{\{-?\s*'<\|im_start\|>'\s*\+\s*message\['role'\]\s*\+\s*'\n'\s*\+\s*message\['content'\]\s*"
    r"\+\s*'<\|im_end\|>'\s*\+\s*'\n'\s*-?\}\}")
MARKED_TURN = (
    "{% if message['train'] %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
)


def with_generation_markers(template: str) -> str:
    """The ChatML ``template`` with ``{% generation %}`` around trained turns' content and ``<|im_end|>``."""
    marked, count = CHATML_TURN.subn(lambda _: MARKED_TURN, template)
    if count != 1:
        raise SystemExit("the trl method needs a ChatML chat template (tiny, SmolLM2) to add generation markers to")
    return marked


def trl_trainer(args: argparse.Namespace, model: Any, tokenizer: Any, examples: list[misstep.Example],
                out: Path) -> Any:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [{"messages": [{"role": "user" if m.role == "tool" else m.role, "content": m.content, "train": m.trained}
                          for m in e.messages]} for e in examples]
    original = tokenizer.apply_chat_template(rows[0]["messages"], tokenize=False)
    tokenizer.chat_template = with_generation_markers(tokenizer.chat_template)
    if tokenizer.apply_chat_template(rows[0]["messages"], tokenize=False) != original:
        raise SystemExit("the chat template with generation markers renders other text than the model's own")
    steps = -(-len(rows) // args.batch_size)
    own = {} if args.gradient_checkpointing == "default" else {"gradient_checkpointing": False}  # set on the model
    config = training_args(args, out, steps, SFTConfig, assistant_only_loss=True, max_length=args.max_length, **own)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.data_collator = Counting(trainer.data_collator)
    return trainer


BUILDERS = {"misstep": engine_trainer, "trl": trl_trainer, "trainer": padded_trainer}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train one method for an epoch in this process and measure it."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(args.seed)
    examples = list(misstep.read_jsonl(args.examples_file, misstep.Example))
    tokenizer = load_tokenizer(misstep.ModelSpec(path=args.model))
    model = AutoModelForCausalLM.from_pretrained(resolve_model(args.model), dtype=torch.float32,
                                                 attn_implementation=args.attention)
    if args.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=args.lora, lora_alpha=2 * args.lora, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    mode = checkpointing_of(args, args.run)
    if mode in ("selective", "full"):
        checkpointing.enable(model, mode)
    with tempfile.TemporaryDirectory() as out:
        trainer = BUILDERS[args.run](args, model, tokenizer, examples, Path(out))
        clock = step_clock()
        trainer.add_callback(clock)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            trainer.add_callback(step_profiler(args.warmup, args.profile / f"{args.run}.txt"))
        result = trainer.train()
    if args.save_model and args.run == "misstep":
        trainer.save_model(str(args.save_model))
        tokenizer.save_pretrained(args.save_model)
    batches = trainer.data_collator.batches[:len(clock.times)]
    timed = batches[args.warmup:]
    seconds = clock.times[-1] - clock.times[args.warmup - 1] if args.warmup else None
    if seconds is None or not timed:
        raise SystemExit(f"need more than --warmup {args.warmup} steps: {len(clock.times)} steps ran")
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**20
        device = f"cuda ({torch.cuda.get_device_name()})"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        device = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "method": args.run, "steps": len(clock.times), "timed_steps": len(timed), "seconds": seconds,
        "trained_tokens": sum(t for t, _ in timed), "all_tokens": sum(a for _, a in timed),
        "epoch_trained_tokens": sum(t for t, _ in batches), "train_loss": result.training_loss,
        "peak_memory_mib": peak, "peak_kind": "GPU allocated" if torch.cuda.is_available() else "process RSS",
        "clock": "wall" if torch.cuda.is_available() else "process CPU time",
        "device": device, "dtype": "bf16 autocast" if trainer.args.bf16 else "fp32",
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "checkpointing": mode,
    }


# --- main --------------------------------------------------------------------------------------------

def table(results: list[dict[str, Any]]) -> str:
    speed = {r["method"]: r["trained_tokens"] / r["seconds"] for r in results}
    memory = {r["method"]: r["peak_memory_mib"] for r in results}
    header = ("| method | gradient checkpointing | trained tokens/s | all tokens/s | vs padded Trainer | vs TRL | "
              "peak memory (MiB) | memory vs TRL | trained tokens (epoch) | mean loss |")
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        ratio = {m: f"{speed[r['method']] / speed[m]:.2f}x" if m in speed else "-" for m in ("trainer", "trl")}
        lighter = f"{memory[r['method']] / memory['trl']:.2f}x" if "trl" in memory else "-"
        lines.append(f"| {LABELS[r['method']]} | {r['checkpointing']} | {speed[r['method']]:,.0f} | "
                     f"{r['all_tokens'] / r['seconds']:,.0f} | {ratio['trainer']} | {ratio['trl']} | "
                     f"{r['peak_memory_mib']:,.0f} | {lighter} | {r['epoch_trained_tokens']:,} | {r['train_loss']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="alias, model folder or .gguf file")
    parser.add_argument("--data", default="arithmetic", help="arithmetic, or gsm8k:PATH (GSM8K train.jsonl)")
    parser.add_argument("--examples", type=int, default=96, help="how many conversations (one epoch)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--rows", default="engine",
                        help="misstep's packed rows: engine (its own budget), longest (each batch's longest example), "
                             "one (one row per batch, for flash attention) or a number of tokens")
    parser.add_argument("--attention", default="sdpa", help="attn_implementation: sdpa, eager, flash_attention_2 ...")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 autocast on a GPU, fp32 on CPU")
    parser.add_argument("--lora", type=int, default=0, help="LoRA rank on all linear layers (alpha 2r); 0: full")
    parser.add_argument("--gradient-checkpointing", choices=("default", "off", "selective", "full"), default="default",
                        help="for every method; default: each method's own default")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help="misstep's sft chunk_size (trained tokens per chunk of the output layer; 0: all at once)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--profile", type=Path,
                        help="write torch.profiler's table of each method's timed steps to PROFILE/METHOD.txt "
                             "(the profiler slows them down: its run's speeds are not comparable)")
    parser.add_argument("--save-model", type=Path, help="save the misstep method's trained model and tokenizer here")
    parser.add_argument("--run", choices=METHODS, help=argparse.SUPPRESS)  # one method, in a child process
    parser.add_argument("--examples-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows not in ("engine", "longest", "one") and not args.rows.isdigit():
        raise SystemExit(f"--rows {args.rows!r}: use engine, longest, one or a number of tokens")
    if args.run:
        print(json.dumps(run(args)))
        return

    if args.data.startswith("gsm8k:"):
        examples = gsm8k_examples(Path(args.data.split(":", 1)[1]), args.examples)
    elif args.data == "arithmetic":
        examples = arithmetic_examples(args.examples, args.seed)
    else:
        raise SystemExit(f"--data {args.data!r}: use arithmetic or gsm8k:PATH")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        examples_file = Path(folder) / "examples.jsonl"
        misstep.write_jsonl(examples_file, examples)
        options = [part for key, value in vars(args).items() if value is not None and key not in ("json", "run")
                   for part in (f"--{key.replace('_', '-')}", str(value))]
        for method in args.methods.split(","):
            command = [sys.executable, __file__, *options, "--run", method, "--examples-file", str(examples_file)]
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env={**os.environ, "TQDM_DISABLE": "1"})
            if done.returncode:
                sys.stderr.write(done.stderr[-4000:])
                raise SystemExit(f"{method} failed (exit {done.returncode})")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first = results[0]
    turns = sum(sum(m.role == "assistant" for m in e.messages) - 1 for e in examples) / len(examples)
    rows = {"engine": "as the engine packs them (one per batch where sdpa attends one sequence at a time, on a CPU; "
                      "else as long as each batch's longest example)",
            "longest": "as long as each batch's longest example", "one": "one per batch"}.get(
        args.rows, f"of at most {args.rows} tokens")
    training = (f"LoRA r {args.lora} on all linear layers ({first['trainable'] / 1e6:.3g}M trained)" if args.lora
                else "full fine-tuning")
    print(f"model {args.model} ({first['parameters'] / 1e6:.3g}M parameters, {first['dtype']}, {args.attention}, "
          f"{training}) on {first['device']}; {len(examples)} {args.data.split(':')[0]} conversations ({turns:.1f} "
          f"trained turns each), batch size {args.batch_size}, {first['steps']} steps, timed after {args.warmup} "
          f"({first['clock']}); packed rows {rows}; misstep's output layer in chunks of {args.chunk_size or 'all'} "
          f"tokens; peak memory: {first['peak_kind']}")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=2))


if __name__ == "__main__":
    main()
