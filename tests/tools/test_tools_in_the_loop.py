"""The tools and verifiers inside the real agent loop: the collect stage with the calculator and the
numeric verifier on the NAT plugin's scripted teacher, and a ReAct search episode judged by `qa`."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import yaml

import misstep
from misstep.agent import Agent, Rollout


def test_collect_with_calculate_and_numeric(tmp_path: Path) -> None:
    recipe = misstep.recipe.validate_recipe(yaml.safe_load(textwrap.dedent("""
        name: loop
        stages:
          - use: collect
            tasks: {use: arithmetic-word-problems, count: 20}
            backend: {use: scripted-teacher, error_rate: 0.0, error_slope: 0.0}
            tools: [calculate]
            verifier: numeric
            temperatures: [0.0]
        """)), plugins=misstep.get_plugins())
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    trajectories = list(misstep.read_jsonl(run.dir / "collect" / "trajectories.jsonl", misstep.Trajectory))
    assert len(trajectories) == 20
    assert Counter(t.label for t in trajectories) == {"positive": 20}  # an error-free teacher, a right calculator
    for trajectory in trajectories:
        turns = trajectory.messages[trajectory.prompt_len:]
        observations = [m.content for m in turns if m.role == "user"]
        assert observations and all(o.startswith("Observation: ") and "Error" not in o for o in observations)
        assert trajectory.metadata["end"] == "finish"


class Replay(misstep.Backend):
    """Replies with fixed turns in order (the last repeats)."""

    name = "replay"

    def __init__(self, turns: list[str]) -> None:
        super().__init__()
        self.turns = turns

    def generate(self, conversations, sampling):  # type: ignore[no-untyped-def]
        done = [sum(m.role == "assistant" for m in c) - 1 for c in conversations]
        return [self.turns[min(turn, len(self.turns) - 1)] for turn in done]


def test_search_episode_judged_by_qa(tmp_path: Path) -> None:
    corpus = tmp_path / "passages.jsonl"
    corpus.write_text(json.dumps({"title": "Also Sprach Zarathustra", "text": "Richard Strauss set Nietzsche's "
                                  "philosophical novel to music in 1896."}) + "\n")
    plugins = misstep.get_plugins()
    search = plugins.create("tool", "search", {"corpus": str(corpus)})
    backend = Replay(["Thought: look it up.\nAction: search[Nietzsche novel music]",
                      "Thought: it says Strauss.\nAction: finish[Richard Strauss]"])
    agent = Agent(backend, [search], plugins.create("verifier", "qa"), prompt=misstep.PromptTemplate(preset="qa"))
    task = misstep.Task(id="hotpotqa-6917", question="Who set Nietzsche's philosophical novel to music?",
                        answer="Richard Strauss", dataset="hotpotqa")
    [trajectory] = agent.run([Rollout(task)])
    assert trajectory.messages[trajectory.prompt_len + 1].content == (
        "Observation:  #1: Also Sprach Zarathustra: Richard Strauss set Nietzsche's philosophical novel to music "
        "in 1896.")
    assert trajectory.verdict.correct is True and trajectory.verdict.metrics == {"em": 1.0, "f1": 1.0}
