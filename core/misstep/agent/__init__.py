"""The agent runtime: the batched ReAct loop, a resumable trajectory store and evaluation metrics."""

from misstep.agent.loop import (
    STOP,
    Agent,
    Branch,
    PromptTransform,
    Rollout,
    rollout_key,
    rollout_seed,
)
from misstep.agent.metrics import report, summarize
from misstep.agent.store import TrajectoryStore, trajectory_key

__all__ = [
    "STOP", "Agent", "Branch", "PromptTransform", "Rollout", "TrajectoryStore", "report", "rollout_key",
    "rollout_seed", "summarize", "trajectory_key",
]
