"""What to load: the model a recipe fine-tunes and its LoRA settings (plain pydantic, no plugin imports).

:mod:`misstep.models`, the training engine and the backends read these; :mod:`misstep.recipe` embeds
them in a recipe.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from misstep.components import InputPath

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
SMOLLM2 = "smollm2-135m-instruct"
ALIASES = ("tiny", "tiny-tools", SMOLLM2)
"""Model names that are not paths: ``tiny`` (built by :mod:`misstep.testing`) and the SmolLM2 GGUF file."""

ModelPath = Annotated[str, InputPath(names=ALIASES)]
"""An options field naming a model: an alias, a model folder or a ``.gguf`` file (validation checks it exists)."""


class LoraSpec(BaseModel):
    """LoRA settings (peft)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(default_factory=lambda: ["q_proj", "v_proj"])


class ModelSpec(BaseModel):
    """The model a recipe fine-tunes (and, by default, evaluates)."""

    model_config = ConfigDict(extra="forbid")

    path: ModelPath = Field(default="tiny", description="alias, local folder or .gguf file")
    tokenizer: Annotated[str | None, InputPath()] = Field(default=None, description="tokenizer folder, if not the model's")
    dtype: Dtype = "auto"
    adapter: Annotated[str | None, InputPath()] = Field(
        default=None, description="a LoRA adapter to load on top of the model")
    lora: LoraSpec | None = None
