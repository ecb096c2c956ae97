"""The batched ReAct loop: turns, tools, finish, action errors, turn limit, stop strings, batching."""

from __future__ import annotations

import misstep
from misstep.agent import Agent, Rollout
from misstep.prompts import ACKNOWLEDGEMENT, PromptTemplate

from agent_components import Add, Exact, ScriptedBackend

SOLVES = [
    "Thought: add them\nAction: add[2, 3]",
    "Thought: the sum is 5\nAction: finish[5]",
]


def agent(replies, **kwargs):
    backend = ScriptedBackend(ScriptedBackend.Options(replies=replies))
    return Agent(backend, [Add()], Exact(), **kwargs)


def task(id, question, answer, dataset="toy"):
    return misstep.Task(id=id, question=question, answer=answer, dataset=dataset)


def test_tool_call_then_finish_gives_a_verified_trajectory():
    [trajectory] = agent({"2+3?": SOLVES}).run([Rollout(task("a", "2+3?", 5), temperature=0.5, sample=2)])
    roles = [m.role for m in trajectory.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert trajectory.prompt_len == 3
    assert trajectory.messages[1].content == ACKNOWLEDGEMENT and not trajectory.messages[1].trained
    assert trajectory.messages[2].content == "Question: 2+3?"
    assert trajectory.messages[4].content == "Observation: 5"
    assert trajectory.verdict.correct is True and trajectory.verdict.prediction == "5"
    assert trajectory.metadata == {"dataset": "toy", "turns": 2, "action_errors": 0, "end": "finish"}
    assert trajectory.provenance.temperature == 0.5 and trajectory.provenance.sample == 2
    assert trajectory.provenance.model == "scripted" and trajectory.id == "a#t0.5-s2"


def test_action_error_is_recorded_and_ends_the_episode():
    replies = {"q": ["Thought: I will just talk"], "r": ["Thought: hm\nAction: multiply[2, 3]"]}
    trajectories = {t.task_id: t for t in agent(replies).run([Rollout(task("q", "q", 1)), Rollout(task("r", "r", 6))])}
    for trajectory in trajectories.values():
        assert trajectory.metadata["end"] == "action_error"
        assert trajectory.metadata["action_errors"] == 1 and trajectory.metadata["turns"] == 1
        assert trajectory.messages[-1].role == "assistant"
        assert trajectory.verdict.correct is False and trajectory.verdict.prediction is None
    assert "no 'Action:'" in trajectories["q"].metadata["action_error"]
    assert "unknown tool 'multiply'" in trajectories["r"].metadata["action_error"]


def test_turn_limit_cuts_the_episode_after_the_last_observation():
    looping = {"loop": ["Thought: again\nAction: add[1, 1]"]}
    [trajectory] = agent(looping, max_turns=3).run([Rollout(task("l", "loop", 2))])
    assert trajectory.metadata["end"] == "max_turns" and trajectory.metadata["turns"] == 3
    assert sum(m.role == "assistant" for m in trajectory.messages[trajectory.prompt_len:]) == 3
    assert trajectory.messages[-1].content == "Observation: 2"
    assert trajectory.verdict.correct is False


def test_the_stop_string_and_what_follows_are_cut():
    chatty = {"s": ["Thought: add\nAction: add[4, 4]\nObservation: 9 (made up)\nThought: so\nAction: finish[9]",
                    "Action: finish[8]"]}
    [trajectory] = agent(chatty).run([Rollout(task("s", "s", 8))])
    assert trajectory.messages[3].content == "Thought: add\nAction: add[4, 4]"
    assert trajectory.messages[4].content == "Observation: 8"
    assert trajectory.verdict.correct is True


def test_tool_errors_become_observations():
    [trajectory] = agent({"e": ["Action: add[two, 3]", "Action: finish[5]"]}).run([Rollout(task("e", "e", 5))])
    assert trajectory.messages[4].content == "Observation: Error: cannot add 'two, 3'"


def test_all_live_trajectories_generate_together_and_finished_ones_leave():
    replies = {"one": ["Action: finish[1]"], "two": SOLVES, "three": ["Action: add[1,1]", "Action: add[1,2]",
                                                                       "Action: finish[3]"]}
    tasks = [task(str(i), q, a) for i, (q, a) in enumerate([("one", 1), ("two", 5), ("three", 3)] * 2)]
    finished = list(agent(replies).run([Rollout(t) for t in tasks]))
    assert ScriptedBackend.calls == [6, 4, 2]  # one call per turn, over every trajectory still running
    assert [t.task_id for t in finished[:2]] == ["0", "3"]  # yielded as they finish
    assert all(t.verdict.correct for t in finished)


def test_batch_size_bounds_each_call_and_refills_from_waiting_rollouts():
    replies = {"two": SOLVES}
    finished = list(agent(replies, batch_size=2).run([Rollout(task(str(i), "two", 5)) for i in range(5)]))
    assert len(finished) == 5 and max(ScriptedBackend.calls) == 2
    assert sum(ScriptedBackend.calls) == 10  # every rollout took exactly two turns


def test_one_at_a_time_gives_the_same_trajectories():
    replies = {"two": SOLVES, "one": ["Action: finish[1]"]}
    rollouts = [Rollout(task("a", "two", 5)), Rollout(task("b", "one", 2))]
    batched = {t.id: t.messages for t in agent(replies).run(rollouts)}
    single = {t.id: t.messages for t in agent(replies, batch_size=1).run(rollouts)}
    assert batched == single


def test_prompt_template_and_transform_shape_the_prompt():
    template = PromptTemplate(instruction="Add numbers with add[a, b].", acknowledgement=None,
                              question="Q: {question}", observation="Result: {observation}")

    def hint(prompt):
        return [*prompt[:-1], misstep.Message(role="user", content=prompt[-1].content + " Solve it correctly.")]

    backend = ScriptedBackend(ScriptedBackend.Options(default="Action: add[1, 2]"))
    [trajectory] = Agent(backend, [Add()], Exact(), prompt=template, prompt_transform=hint, max_turns=1).run(
        [Rollout(task("t", "1+2", 3))])
    assert [m.content for m in trajectory.messages[:2]] == ["Add numbers with add[a, b].", "Q: 1+2 Solve it correctly."]
    assert trajectory.prompt_len == 2
    assert trajectory.messages[-1].content == "Result: 3"


def test_a_tool_that_raises_gives_an_error_observation():
    class Broken(misstep.Tool):
        name = "add"

        def run(self, argument):
            raise RuntimeError("boom")

    backend = ScriptedBackend(ScriptedBackend.Options(default="Action: add[1]"))
    [trajectory] = Agent(backend, [Broken()], Exact(), max_turns=1).run([Rollout(task("b", "b", 1))])
    assert trajectory.messages[-1].content == "Observation: Error: tool 'add' failed: RuntimeError: boom"


def test_sampling_carries_temperature_stop_and_a_per_turn_seed():
    seen = []

    class Recording(ScriptedBackend):
        def generate(self, conversations, sampling):
            seen.extend(sampling)
            return super().generate(conversations, sampling)

    backend = Recording(Recording.Options(replies={"two": SOLVES}))
    list(Agent(backend, [Add()], Exact(), max_new_tokens=40).run([Rollout(task("a", "two", 5), 0.7, 0, seed=11)]))
    assert [(s.temperature, s.max_new_tokens, s.stop, s.seed) for s in seen] == [
        (0.7, 40, ("\nObservation:",), 11), (0.7, 40, ("\nObservation:",), 12)]
