"""The ``train`` stage: fine-tune the recipe's model on an earlier stage's examples with a loss.

The stage encodes the examples (:mod:`misstep.training.encode`) into ``dataset.jsonl``, then trains
in this process, or in ``processes`` ranks launched with torchrun (always for DeepSpeed). A re-run
after a crash resumes from the last checkpoint in the stage folder. Outputs: ``model`` (a folder with
full weights or a LoRA adapter, the tokenizer and ``misstep.json``), ``train_loss``, ``trained_tokens``,
``truncated``, ``examples`` and ``steps``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from misstep.components import InputPath, Loss, Options, Stage
from misstep.context import StageContext
from misstep.datamodel import Example, PreferenceExample, RankedExample
from misstep.errors import DataError, MisstepError
from misstep.hookspecs import Register, hookimpl
from misstep.jsonl import read_json, read_jsonl
from misstep.models import (
    ALIASES,
    MODEL_INFO,
    load_tokenizer,
    resolve_model,
    trained_spec,
)
from misstep.precision import Choice, choose
from misstep.recipe import LossRef, StageInput, dump_recipe
from misstep.specs import ModelSpec

DEEPSPEED_PRESETS: dict[str, dict[str, Any]] = {
    "zero2": {"zero_optimization": {"stage": 2}},
    "zero3": {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}},
    "zero3-offload": {"zero_optimization": {
        "stage": 3, "stage3_gather_16bit_weights_on_model_save": True,
        "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"}}},
}


class ExamplesStage(Stage["ExamplesStage.Options"]):
    """Train on an existing JSONL file of Example (or RankedExample) records: it becomes the `examples` output."""

    name = "examples"

    class Options(Options):
        path: Annotated[Path, InputPath()] = Field(description="JSONL file of Example or RankedExample records")
        reformatter: dict[str, Any] | None = Field(
            default=None, description="the reformatter that made the file ({use: name, ...}), stored with the "
            "trained model so evaluation applies its inference prompt")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        path = self.options.path.expanduser().resolve()
        if not path.is_file():
            raise MisstepError(f"examples file {path} does not exist; set `path:` to a JSONL file of examples")
        return {"examples": path, "reformatter": self.options.reformatter}


class TrainStage(Stage["TrainStage.Options"]):
    """Fine-tune the model on examples with a loss (transformers Trainer; LoRA, DeepSpeed, torchrun)."""

    name = "train"

    class Options(Options):
        examples: Annotated[str, StageInput()] = Field(
            description="earlier stage whose `examples` output to train on: Example records (KTO: labelled "
            "desirable or undesirable), RankedExample records for ranked losses, PreferenceExample records for "
            "paired preference losses (dpo, simpo)")
        loss: LossRef = Field(default_factory=lambda: LossRef(use="sft"), description="a registered loss")
        init: Annotated[str | None, StageInput()] = Field(
            default=None, description="earlier train stage whose model (or LoRA adapter) to continue from")
        epochs: float = Field(default=1.0, gt=0)
        max_steps: int | None = Field(default=None, gt=0, description="stop after this many steps (overrides epochs)")
        learning_rate: float = Field(default=5e-5, gt=0)
        lr_scheduler: str = Field(default="cosine", description="transformers scheduler: linear, cosine, constant, ...")
        warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
        weight_decay: float = Field(default=0.0, ge=0)
        batch_size: int = Field(default=8, gt=0, description="examples per device and step")
        gradient_accumulation: int = Field(default=1, gt=0)
        max_length: int = Field(default=1024, gt=1, description="tokens; longer examples are cut (reported)")
        precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
            default="auto", description="auto: bf16 autocast (float32 master weights) on a GPU or CPU with native "
            "bf16, else fp32")
        gradient_checkpointing: Literal["selective", "full"] | bool = Field(
            default=False, description="recompute activations in the backward pass: full (or true) keeps only each "
            "decoder layer's input (least memory, about a third more compute), selective keeps the outputs of "
            "matrix products and attention and recomputes the element-wise operations (about half the "
            "activations, a few percent more compute); on a CPU either also hands freed memory back to the "
            "system during each step (docs/training.md#memory)")
        packing: Literal["auto"] | bool = Field(
            default="auto", description="padding-free packed batches; auto: on with CUDA (not for ranked and "
            "preference losses)")
        deepspeed: Annotated[str, InputPath(names=tuple(DEEPSPEED_PRESETS))] | dict[str, Any] | None = Field(
            default=None, description="DeepSpeed config: a preset (zero2, zero3, zero3-offload), a JSON file or a "
            "mapping; runs under torchrun")
        processes: int | None = Field(default=None, gt=0, description="training processes (torchrun ranks); "
                                      "default: 1 in this process (DeepSpeed: one per GPU)")
        report_to: str | list[str] = Field(default="none", description="tensorboard, wandb, ... (transformers)")
        logging_steps: int = Field(default=10, gt=0)
        save_steps: int | None = Field(default=None, gt=0, description="checkpoint every N steps (default: each epoch)")
        seed: int | None = Field(default=None, description="default: the recipe's seed")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        opts = self.options
        loss = opts.loss.build()
        if loss.ranked and type(loss).collate is Loss.collate:
            raise MisstepError(f"loss {opts.loss.use!r} is ranked but has no collate(features): it cannot be trained")
        model = self._model(ctx)
        output = ctx.dir / "model"
        result_file = ctx.dir / "result.json"
        stats_file = ctx.dir / "dataset.json"
        if not (result_file.is_file() and (output / MODEL_INFO).is_file()):  # not already trained before a crash
            stats = self._encode(ctx, model, loss)
            stats_file.write_text(json.dumps(stats, indent=2) + "\n")
            self._train(ctx, model, loss)
            shutil.rmtree(ctx.dir / "checkpoints", ignore_errors=True)  # the model is saved: no resume needed
        stats = read_json(stats_file)
        result = read_json(result_file)
        ctx.log(f"trained {result['steps']} steps, loss {result['train_loss']:.4f} -> {output}")
        return {"model": output, "train_loss": result["train_loss"], "steps": result["steps"], **stats}

    def _model(self, ctx: StageContext) -> ModelSpec:
        """What to load: the `init` stage's model (its adapter continues) or the recipe's model."""
        if self.options.init is None:
            return ctx.model
        return trained_spec(ctx.output(self.options.init, "model"), dtype=ctx.model.dtype)

    def _encode(self, ctx: StageContext, model: ModelSpec, loss: Loss[Any]) -> dict[str, int]:
        """Encode the examples into ``dataset.jsonl``; return counts of examples, trained tokens, truncated.

        Examples with negative weights are refused unless the loss takes them (``sft`` with unlikelihood).
        """
        from misstep.training.encode import add_mismatched

        opts = self.options
        path = Path(ctx.output(opts.examples, "examples"))
        if not path.is_file():
            raise MisstepError(f"the examples of stage {opts.examples!r} are missing: {path} does not exist. "
                               f"Re-run that stage (misstep run ... --force) to write them")
        context = _context_length(model)
        if context is not None and opts.max_length > context:
            raise MisstepError(f"max_length {opts.max_length} is longer than the model's context ({context} tokens); "
                               f"set `max_length:` to at most {context}")
        tokenizer = load_tokenizer(model)
        kept = truncated = tokens = total = 0
        kind = _record_kind(loss)
        unpaired: list[dict[str, Any]] = []  # written at the end, each with the previous one's continuation
        with (ctx.dir / "dataset.jsonl").open("w", encoding="utf-8") as out:
            for record in ctx.progress(read_jsonl(path, kind), desc="encoding"):
                total += 1
                row, cut, count = _row(record, loss, tokenizer, opts.max_length, path)
                truncated += cut
                if row is None or count == 0:
                    continue
                if loss.preference == "unpaired":
                    unpaired.append(row)
                else:
                    out.write(json.dumps(row) + "\n")
                kept += 1
                tokens += count
            if unpaired:
                add_mismatched(unpaired, opts.max_length)  # type: ignore[arg-type]  # rows of ContinuationFeatures
                out.writelines(json.dumps(row) + "\n" for row in unpaired)
        if total == 0:
            raise MisstepError(f"{path} holds no examples: nothing to train on. Check the stage {opts.examples!r} "
                               "(its reformatter may have dropped every trajectory)")
        if kept == 0:
            raise MisstepError(f"none of the {total} examples in {path} has a trained token within max_length "
                               f"{opts.max_length} ({truncated} were longer): raise `max_length:` or check which "
                               "messages are trained")
        if truncated:
            what = "dropped (a continuation did not fit)" if loss.continuations else \
                "cut (labels of the cut turn dropped)"
            ctx.log(f"{truncated} of {total} examples were longer than max_length {opts.max_length}: {what}")
        return {"examples": kept, "trained_tokens": tokens, "truncated": truncated, "skipped": total - kept}

    def _train(self, ctx: StageContext, model: ModelSpec, loss: Loss[Any]) -> dict[str, Any]:
        from misstep.training.engine import Job, train

        opts = self.options
        cuda = _cuda()
        packing = (cuda and not loss.continuations) if opts.packing == "auto" else opts.packing
        if packing and loss.continuations:
            what = "ranked" if loss.ranked else "preference"
            raise MisstepError(f"`packing: true` does not apply to the {what} loss {opts.loss.use!r}; set packing: "
                               "false")
        if packing:
            try:
                import misstep.training.packing  # noqa: F401
            except ImportError as error:
                raise MisstepError(f"`packing: true` needs misstep.training.packing, which cannot be imported "
                                   f"({error}); set `packing: false`") from None
        deepspeed = _deepspeed_config(opts.deepspeed, ctx.dir)
        processes = opts.processes or (max(_device_count(), 1) if deepspeed else 1)
        job = Job(
            dataset=ctx.dir / "dataset.jsonl",
            loss=dump_recipe(opts.loss),
            model=model,
            lora=ctx.model.lora if model.adapter is None else None,
            checkpoints=ctx.dir / "checkpoints",
            output=ctx.dir / "model",
            info={"base": _base(model), "reformatter": ctx.output(opts.examples, "reformatter", None),
                  "loss": dump_recipe(opts.loss), "recipe": ctx.recipe.name, "stage": ctx.name},
            packing=packing,
            checkpointing="full" if opts.gradient_checkpointing is True else opts.gradient_checkpointing or None,
            max_length=opts.max_length,
            arguments=self._arguments(ctx, cuda, deepspeed),
        )
        if model.adapter and ctx.model.lora:
            ctx.log(f"continuing the LoRA adapter {model.adapter}; `model.lora` settings do not apply to it")
        if processes > 1 or deepspeed is not None:
            from misstep.training.launch import launch

            ctx.log(f"launching {processes} training processes (torchrun)")
            return launch(job, ctx.dir, processes, quiet=ctx.run.quiet)
        return train(job, loss=opts.loss.build(), log=ctx.log)  # the loss built here: the recipe's plugins too

    def _arguments(self, ctx: StageContext, cuda: bool, deepspeed: dict[str, Any] | None) -> dict[str, Any]:
        """transformers TrainingArguments from the options."""
        opts = self.options
        if opts.precision == "auto" and deepspeed is not None and not cuda:
            choice = Choice("fp32", "auto: DeepSpeed without a GPU trains in float32")
        else:
            choice = choose(opts.precision, cuda=cuda)
        ctx.log(f"precision {choice}")
        precision = choice.precision
        seed = opts.seed if opts.seed is not None else ctx.seed
        return {
            "num_train_epochs": opts.epochs,
            "max_steps": opts.max_steps or -1,
            "learning_rate": opts.learning_rate,
            "lr_scheduler_type": opts.lr_scheduler,
            "warmup_steps": opts.warmup_ratio,
            "weight_decay": opts.weight_decay,
            "per_device_train_batch_size": opts.batch_size,
            "gradient_accumulation_steps": opts.gradient_accumulation,
            "bf16": precision == "bf16",
            "fp16": precision == "fp16",
            "deepspeed": deepspeed,
            "report_to": opts.report_to,
            "logging_steps": opts.logging_steps,
            "save_strategy": "steps" if opts.save_steps else "epoch",
            "save_steps": opts.save_steps or 500,
            "save_total_limit": 2,
            "seed": seed,
            "use_cpu": not cuda and deepspeed is None,  # DeepSpeed on a CPU machine: see engine.cpu_deepspeed_state
            "remove_unused_columns": False,
            "disable_tqdm": ctx.run.quiet,
        }


def _row(record: Example | RankedExample | PreferenceExample, loss: Loss[Any], tokenizer: Any, max_length: int,
         path: Path) -> tuple[dict[str, Any] | None, bool, int]:
    """One record as a row of ``dataset.jsonl`` (None: dropped, too long), whether it was too long, and its trained
    tokens: token ids with labels for token losses, continuation features for ranked and preference losses."""
    from misstep.training import encode

    if not loss.continuations:
        assert isinstance(record, Example)
        encoded = encode.encode_example(record, tokenizer, max_length)
        if not loss.takes_negative_weights and min(encoded.weights, default=0.0) < 0:
            raise DataError(f"example {record.id!r} has tokens of negative weight (unlikelihood terms), which loss "
                            f"{loss.name!r} does not train: set `loss: {{use: sft, unlikelihood: true}}` to train "
                            "them, or give the example's messages and spans weights of 0 or more", path=path)
        return ({"input_ids": encoded.input_ids, "labels": encoded.labels, "weights": encoded.weights,
                 "example": asdict(encoded.example)}, encoded.truncated, encoded.trained_tokens)
    if isinstance(record, RankedExample):
        features = encode.encode_ranked(record, tokenizer, max_length)
    elif isinstance(record, PreferenceExample):
        features = encode.encode_preference(record, tokenizer, max_length)
    else:
        features = encode.encode_unpaired(record, tokenizer, max_length)
    if features is None:
        return None, True, 0
    trained = [sum(flags) for flags in features["candidate_trained"]]
    if not loss.ranked and not all(trained):  # a preference side without trained tokens: nothing to compare
        return None, False, 0
    return dict(features), False, sum(trained)


def _record_kind(loss: Loss[Any]) -> type[Example] | type[RankedExample] | type[PreferenceExample]:
    """The records ``loss`` trains on."""
    if loss.ranked:
        return RankedExample
    return PreferenceExample if loss.preference == "paired" else Example


def _base(model: ModelSpec) -> str:
    """The base model as misstep.json records it: an alias as is, a folder or file as an absolute path."""
    return model.path if model.path in ALIASES else str(Path(model.path).expanduser().resolve())


def _context_length(model: ModelSpec) -> int | None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model(model.path))
    return getattr(config, "max_position_embeddings", None)


def _deepspeed_config(value: str | dict[str, Any] | None, folder: Path) -> dict[str, Any] | None:
    """The DeepSpeed config of a preset, file or mapping; batch and precision settings follow the stage's."""
    if value is None:
        return None
    if isinstance(value, dict):
        config = dict(value)
    elif value in DEEPSPEED_PRESETS:
        config = json.loads(json.dumps(DEEPSPEED_PRESETS[value]))
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            raise MisstepError(f"deepspeed: {value!r} is neither a preset ({', '.join(DEEPSPEED_PRESETS)}) nor a "
                               "JSON file")
        config = read_json(path)
        if not isinstance(config, dict):
            raise DataError("a DeepSpeed config must be a JSON object", path=path)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        config.setdefault(key, "auto")
    if config.get("train_batch_size") == "auto":
        # transformers fills it before the process group exists (world size 1); DeepSpeed computes it right
        del config["train_batch_size"]
    config.setdefault("bf16", {"enabled": "auto"})
    config.setdefault("fp16", {"enabled": "auto"})
    zero = config.get("zero_optimization", {})
    if zero.get("stage") == 3:
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)  # save_model writes whole weights
    return config


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _device_count() -> int:
    import torch

    return torch.cuda.device_count()


@hookimpl
def register_stages(register: Register) -> None:
    register(ExamplesStage)
    register(TrainStage)
