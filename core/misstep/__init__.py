"""misstep: failure-aware fine-tuning of LLM agents.

The public API for plugins: the data model, the component base classes, the hook markers and the
plugin manager. Plugins import from here only.
"""

from misstep.components import (
    Backend,
    Component,
    Loss,
    LossOutput,
    Options,
    Reformatter,
    Sampling,
    Stage,
    TaskLoader,
    Tool,
    TrajectorySource,
    Verifier,
)
from misstep.datamodel import (
    SCHEMA_VERSION,
    Candidate,
    Example,
    Message,
    Provenance,
    RankedExample,
    Task,
    Trajectory,
    Verdict,
    WeightSpan,
)
from misstep.errors import (
    ComponentError,
    DataError,
    MisstepError,
    PluginError,
    RecipeError,
)
from misstep.hookspecs import hookimpl
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
from misstep.models import resolve_model, trained_spec
from misstep.plugins import Plugins, get_plugins
from misstep.prompts import PromptTemplate
from misstep.recipe import (
    BackendRef,
    LossRef,
    ModelSpec,
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
from misstep.stages import StageContext, run_recipe
from misstep.summary import grouped_metrics, markdown_table, save_metrics
from misstep.training.encode import Encoded, encode_example

__all__ = [
    "SCHEMA_VERSION", "AllowEmpty", "Backend", "BackendRef", "Candidate", "Component", "ComponentError", "DataError",
    "Example", "JsonlAppender", "Loss", "LossOutput", "LossRef", "Message", "MisstepError", "ModelSpec", "Options",
    "PluginError", "Plugins", "PromptTemplate", "Provenance", "RankedExample", "RecipeError", "Reformatter",
    "ReformatterRef", "Sampling", "SourceRef", "Stage", "StageContext", "StageInput", "Task", "TaskLoader", "TaskRef",
    "TaskRefs", "Tool", "ToolRef", "Trajectory", "TrajectorySource", "Verdict", "Verifier", "VerifierRef", "WeightSpan",
    "get_plugins", "dump_recipe", "hookimpl", "iter_json_rows", "load_recipe", "nonempty", "read_json", "read_jsonl",
    "read_text", "run_recipe", "text_lines", "validate_record", "validate_recipe", "write_jsonl",
    "Encoded", "encode_example", "resolve_model", "trained_spec",
    "grouped_metrics", "markdown_table", "save_metrics",
]
