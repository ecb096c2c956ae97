"""What to load: the model a recipe fine-tunes and its LoRA settings (plain pydantic, no plugin imports).

:mod:`misstep.models`, the training engine and the backends read these; :mod:`misstep.recipe` embeds
them in a recipe.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


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

    path: str = Field(default="tiny", description="alias, local folder or .gguf file")
    tokenizer: str | None = Field(default=None, description="tokenizer folder, if not the model's")
    dtype: Dtype = "auto"
    adapter: str | None = Field(default=None, description="a LoRA adapter to load on top of the model")
    lora: LoraSpec | None = None
