"""One training run: a transformers Trainer whose loss is a misstep Loss component.

A :class:`Job` holds everything a run needs as plain data, so the same run happens in this process or
in every rank that ``torchrun`` starts (:mod:`misstep.training.worker`). The ``train`` stage builds the
job; :func:`train` executes it: loads the model (a new LoRA, or an adapter to continue), batches the
encoded dataset (padded, packed, or with the loss's own ``collate``), trains, resumes from the newest
complete checkpoint if one is there (:mod:`misstep.training.checkpoints`), and saves the model (full
weights or the adapter), the tokenizer and ``misstep.json``. ``train_loss`` is the whole run's mean step
loss, also after a resume: every checkpoint step is logged, so the log history it carries covers the
steps before it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from misstep.components import Loss
from misstep.errors import MisstepError
from misstep.jsonl import iter_json_rows
from misstep.models import MODEL_INFO, load_model, load_tokenizer
from misstep.specs import LoraSpec, ModelSpec
from misstep.training import checkpointing, host_memory
from misstep.training.attention import attends_per_sequence, share_float_masks
from misstep.training.checkpointing import Checkpointing
from misstep.training.checkpoints import last_complete_checkpoint
from misstep.training.encode import Encoded
from misstep.training.token_loss import ExampleInfo

RESULT = "result.json"


class Job(BaseModel):
    """A training run as plain data (written to ``job.json`` for worker processes)."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path  # encoded examples, one JSON object a line
    loss: dict[str, Any]  # the loss reference: {use: name, options...}
    model: ModelSpec  # what to load; an adapter in it is trained further
    lora: LoraSpec | None  # a new LoRA adapter to add (only when the model has none)
    checkpoints: Path
    output: Path
    info: dict[str, Any]  # misstep.json, without "adapter" (decided here)
    packing: bool
    checkpointing: Checkpointing | None = None  # gradient checkpointing of the decoder layers
    max_length: int
    arguments: dict[str, Any]  # transformers TrainingArguments


def read_dataset(path: Path, continuations: bool) -> list[Any]:
    """Encoded examples: :class:`Encoded` for token losses, feature dicts for ranked and preference ones."""
    rows = [row for _, row in iter_json_rows(path)]
    if continuations:
        return rows
    return [Encoded(row["input_ids"], row["labels"], row["weights"], False, ExampleInfo(**row["example"]))
            for row in rows]


@dataclass
class Collator:
    """Batches for the loss: its own ``collate`` if it has one, else padded or packed token batches."""

    loss: Loss[Any]
    pad_id: int
    packing: bool
    one_row: bool = False  # packed: each batch in one row, else rows as long as its longest example (collator())

    def __call__(self, features: Sequence[Any]) -> dict[str, Any]:
        if type(self.loss).collate is not Loss.collate:
            return dict(self.loss.collate(features))
        if self.loss.preference is not None:
            from misstep.training.continuations import collate_continuations

            return collate_continuations(features)
        from misstep.training import packing

        if self.packing:
            budget = sum(len(feature.input_ids) for feature in features) if self.one_row else None
            return packing.collate_packed(features, max_tokens=budget, pad_id=self.pad_id)
        return packing.collate_padded(features, self.pad_id)


def collator(loss: Loss[Any], pad_id: int, packing: bool, model: Any, device: Any) -> Collator:
    """The batches for ``loss`` on ``model``: packed, each batch in one row where the model attends packed rows
    one sequence at a time on ``device`` (:func:`misstep.training.attention.attends_per_sequence`), else in rows
    as long as its longest example (attention under a mask costs a row's whole width); padded without
    ``packing``."""
    return Collator(loss, pad_id, packing, attends_per_sequence(model, device))


def _trainer_class() -> type:
    from transformers import Trainer

    class LossTrainer(Trainer):
        """A Trainer whose loss is a misstep Loss; each of the loss's metrics is averaged into each log line over
        the batches that reported it (a batch without desirable examples has no ``rewards/chosen``)."""

        def __init__(self, *args: Any, loss: Loss[Any], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            share_float_masks(self.model)  # sdpa: one float mask per batch, not a copy per layer
            self.loss = loss
            # per-token losses get the step's trained-token count (summed over accumulation and ranks) and
            # are not divided by the accumulation steps again; other losses are averaged per micro-batch
            self.model_accepts_loss_kwargs = loss.per_token
            self.loss_is_scaled_for_ga = loss.per_token
            self.metric_sums: dict[str, float] = defaultdict(float)
            self.metric_counts: dict[str, int] = defaultdict(int)
            # a CPU with gradient checkpointing: keep the C heap's holes out of the peak (see host_memory);
            # DeepSpeed manages its gradients itself
            self.lean_host = (self.args.device.type == "cpu" and checkpointing.enabled(self.model)
                              and not self.is_deepspeed_enabled)
            if self.lean_host:
                self.add_callback(host_memory.reuse_gradients(self.model))

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            if not self.lean_host:
                return super().training_step(model, inputs, num_items_in_batch)
            host_memory.release()  # what the optimizer step and the previous micro-batch freed
            loss = super().training_step(model, inputs, num_items_in_batch)
            host_memory.release()  # the backward pass's activations
            return loss

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            scale = 1
            if self.loss.per_token and num_items_in_batch is not None:
                inputs = {**inputs, "num_items_in_batch": num_items_in_batch}
                if self.args.average_tokens_across_devices:  # the count spans every rank; DDP averages gradients
                    scale = self.accelerator.num_processes
            output = self.loss.compute(model, inputs)
            if self.lean_host and model.training:
                host_memory.release()  # the forward pass's, before the backward pass
            loss = output.loss * scale
            if model.training:
                for key, value in output.metrics.items():
                    self.metric_sums[key] += float(value)
                    self.metric_counts[key] += 1
            return (loss, None) if return_outputs else loss

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs and self.metric_counts:
                logs.update({key: round(total / self.metric_counts[key], 6) for key, total in self.metric_sums.items()})
                self.metric_sums.clear()
                self.metric_counts.clear()
            super().log(logs, start_time)

    return LossTrainer


def _model(job: Job) -> tuple[Any, bool]:
    """The model to train and whether it is a LoRA adapter on a frozen base."""
    model = load_model(job.model, trainable=True)
    if job.model.adapter:
        return model, True
    if job.lora is not None:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=job.lora.r, lora_alpha=job.lora.alpha, lora_dropout=job.lora.dropout,
                            target_modules=job.lora.target_modules, task_type="CAUSAL_LM")
        return get_peft_model(model, config), True
    return model, False


def _log_at_checkpoints() -> Any:
    """A callback that logs the loss at every checkpoint step, so a checkpoint's log history sums its steps."""
    from transformers import TrainerCallback

    class LogAtCheckpoints(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            control.should_log = control.should_log or control.should_save
            return control

        on_epoch_end = on_step_end

    return LogAtCheckpoints()


def run_loss(log_history: list[dict[str, Any]], resumed_step: int, loss_since: float, global_step: int) -> float:
    """The mean step loss of the whole run: the logged losses up to ``resumed_step`` (each the mean of the
    steps since the previous log line) and ``loss_since``, the Trainer's mean over the steps after it."""
    total, last = 0.0, 0
    for entry in log_history:
        if "loss" in entry and last < entry["step"] <= resumed_step:
            total += entry["loss"] * (entry["step"] - last)
            last = entry["step"]
    return (total + loss_since * (global_step - resumed_step)) / max(global_step, 1)


def cpu_deepspeed_state(job: Job) -> dict[str, Any]:
    """Extra TrainingArguments for DeepSpeed across processes without a GPU.

    transformers starts DeepSpeed there without a process-group backend, so accelerate counts one
    process and every rank would train on the same batches. Set the distributed state up first (gloo)
    and have the Trainer use it.
    """
    import torch

    if not job.arguments.get("deepspeed") or torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", 1)) < 2:
        return {}
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="gloo")
    return {"accelerator_config": {"use_configured_state": True}}


def train(job: Job, loss: Loss[Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the job with ``loss`` (the component ``job.loss`` names), in every process of a distributed
    launch; the main process saves the model. ``log`` gets a line saying which checkpoint the run
    resumes from and which incomplete ones it skipped."""
    from transformers import TrainingArguments, set_seed

    try:
        arguments = TrainingArguments(output_dir=str(job.checkpoints), **job.arguments, **cpu_deepspeed_state(job))
    except ValueError as error:  # e.g. an unknown lr_scheduler
        raise MisstepError(f"the train stage's options are not valid training arguments: {error}") from None
    set_seed(arguments.seed)  # before the model: a new LoRA's initial weights follow the seed
    tokenizer = load_tokenizer(job.model)
    model, adapter = _model(job)
    if job.checkpointing:
        checkpointing.enable(model, job.checkpointing)
    dataset = read_dataset(job.dataset, loss.continuations)
    if loss.uses_reference:
        import torch

        from misstep.training.reference import attach_reference

        autocast = torch.bfloat16 if arguments.bf16 else torch.float16 if arguments.fp16 else None
        attach_reference(dataset, model.to(arguments.device), folder=job.dataset.parent,
                         batch_size=arguments.per_device_train_batch_size, device=arguments.device,
                         disable_adapter=job.lora is not None and not job.model.adapter, autocast=autocast, log=log)
    batches = collator(loss, tokenizer.pad_token_id, job.packing, model, arguments.device)
    trainer = _trainer_class()(model=model, args=arguments, train_dataset=dataset, data_collator=batches,
                               loss=loss)
    if arguments.disable_tqdm:  # a quiet run: no progress bar, and no log lines printed instead of it
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_log_at_checkpoints())
    resume, skipped = last_complete_checkpoint(job.checkpoints)
    for line in skipped:
        log(line)
    resumed_step = int(resume.name.rsplit("-", 1)[1]) if resume else 0
    if resume:
        log(f"resuming from {resume.name} (step {resumed_step})")
    elif skipped:
        log("no complete checkpoint: training from the start")
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except ValueError as error:  # e.g. a batch the loss cannot use
        raise MisstepError(f"training failed: {error}") from error
    trainer.save_model(str(job.output))
    train_loss = run_loss(trainer.state.log_history, resumed_step, result.training_loss, result.global_step)
    outcome = {"train_loss": train_loss, "steps": result.global_step, "resumed_from": str(resume) if resume else None}
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(job.output)
        (job.output / MODEL_INFO).write_text(json.dumps({**job.info, "adapter": adapter}, indent=2) + "\n")
        with (job.output.parent / "log.jsonl").open("w", encoding="utf-8") as handle:
            for entry in trainer.state.log_history:
                handle.write(json.dumps(entry) + "\n")
        (job.output.parent / RESULT).write_text(json.dumps(outcome, indent=2) + "\n")
    return outcome
