"""misstep: failure-aware fine-tuning of LLM agents.

The public API for plugins: the data model, the component base classes, the hook markers, the loss
contract, recipes and the plugin manager. Plugins import from here only.

Names are imported on first use, so importing a lower layer (``misstep.models``, the training engine,
a backend) does not load the upper ones (recipes, the plugin manager) or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from misstep.agent.loop import observe
    from misstep.components import (
        Backend,
        Component,
        InputPath,
        Loss,
        LossOutput,
        Options,
        ParsedCall,
        ParsedReply,
        Reformatter,
        Sampling,
        Stage,
        TaskLoader,
        Tool,
        ToolCallParser,
        TrajectorySource,
        Verifier,
    )
    from misstep.context import Run, StageContext
    from misstep.datamodel import (
        SCHEMA_VERSION,
        Candidate,
        Example,
        Message,
        NextStep,
        PreferenceExample,
        Provenance,
        RankedExample,
        StepCredit,
        StepSpan,
        Task,
        ToolCall,
        ToolSchema,
        Trajectory,
        Verdict,
        WeightSpan,
    )
    from misstep.errors import ComponentError, DataError, MisstepError, PluginError, RecipeError
    from misstep.hookspecs import Register, hookimpl
    from misstep.jsonl import (
        AllowEmpty,
        JsonlAppender,
        iter_json_rows,
        nonempty,
        read_json,
        read_jsonl,
        read_text,
        text_lines,
        validate_record,
        write_jsonl,
    )
    from misstep.models import MODEL_INFO, model_info, resolve_model, trained_spec
    from misstep.pairs import preference_pairs
    from misstep.plugins import Plugins, get_plugins
    from misstep.prompts import PromptTemplate
    from misstep.recipe import (
        BackendRef,
        LossRef,
        ParserRef,
        ReformatterRef,
        SourceRef,
        StageInput,
        TaskRef,
        TaskRefs,
        ToolRef,
        VerifierRef,
        dump_recipe,
        load_recipe,
        validate_recipe,
    )
    from misstep.runner import run_recipe
    from misstep.specs import LoraSpec, ModelPath, ModelSpec
    from misstep.step_credit import correct_prefix, first_wrong_step, step_messages, step_pairs
    from misstep.summary import grouped_metrics, markdown_table, save_metrics
    from misstep.training.continuations import (
        ContinuationFeatures,
        collate_continuations,
        continuation_lengths,
        continuation_scores,
    )
    from misstep.training.encode import Encoded, encode_example
    from misstep.training.packing import collate_packed, collate_padded
    from misstep.training.token_loss import (
        IGNORE_INDEX,
        ExampleInfo,
        TokenScores,
        aligned_cross_entropy,
        model_inputs,
        score_logits,
        token_logprobs,
    )

# public name -> the module that defines it (a test checks this against the imports above)
_EXPORTS = {
    "observe": "misstep.agent.loop",
    **dict.fromkeys(["Backend", "Component", "InputPath", "Loss", "LossOutput", "Options", "ParsedCall",
                     "ParsedReply", "Reformatter", "Sampling", "Stage", "TaskLoader", "Tool", "ToolCallParser",
                     "TrajectorySource", "Verifier"], "misstep.components"),
    **dict.fromkeys(["Run", "StageContext"], "misstep.context"),
    **dict.fromkeys(["SCHEMA_VERSION", "Candidate", "Example", "Message", "NextStep", "PreferenceExample",
                     "Provenance", "RankedExample", "StepCredit", "StepSpan", "Task", "ToolCall", "ToolSchema",
                     "Trajectory", "Verdict", "WeightSpan"], "misstep.datamodel"),
    **dict.fromkeys(["ComponentError", "DataError", "MisstepError", "PluginError", "RecipeError"], "misstep.errors"),
    **dict.fromkeys(["Register", "hookimpl"], "misstep.hookspecs"),
    **dict.fromkeys(["AllowEmpty", "JsonlAppender", "iter_json_rows", "nonempty", "read_json", "read_jsonl", "read_text",
                     "text_lines", "validate_record", "write_jsonl"], "misstep.jsonl"),
    **dict.fromkeys(["MODEL_INFO", "model_info", "resolve_model", "trained_spec"], "misstep.models"),
    "preference_pairs": "misstep.pairs",
    **dict.fromkeys(["Plugins", "get_plugins"], "misstep.plugins"),
    "PromptTemplate": "misstep.prompts",
    **dict.fromkeys(["BackendRef", "LossRef", "ParserRef", "ReformatterRef", "SourceRef", "StageInput", "TaskRef",
                     "TaskRefs", "ToolRef", "VerifierRef", "dump_recipe", "load_recipe", "validate_recipe"],
                    "misstep.recipe"),
    "run_recipe": "misstep.runner",
    **dict.fromkeys(["LoraSpec", "ModelPath", "ModelSpec"], "misstep.specs"),
    **dict.fromkeys(["correct_prefix", "first_wrong_step", "step_messages", "step_pairs"], "misstep.step_credit"),
    **dict.fromkeys(["grouped_metrics", "markdown_table", "save_metrics"], "misstep.summary"),
    **dict.fromkeys(["ContinuationFeatures", "collate_continuations", "continuation_lengths", "continuation_scores"],
                    "misstep.training.continuations"),
    **dict.fromkeys(["Encoded", "encode_example"], "misstep.training.encode"),
    **dict.fromkeys(["collate_packed", "collate_padded"], "misstep.training.packing"),
    **dict.fromkeys(["IGNORE_INDEX", "ExampleInfo", "TokenScores", "aligned_cross_entropy", "model_inputs",
                     "score_logits", "token_logprobs"], "misstep.training.token_loss"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule, ``misstep.testing``) on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
