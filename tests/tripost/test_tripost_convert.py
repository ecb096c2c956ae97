"""The tripost reformatter: per-turn items, rebalancing, gold, weights, repeated interactions."""

from __future__ import annotations

from collections import Counter

import misstep
import pytest

from misstep_tripost.arithmetic import INFO
from misstep_tripost.convert import TriPosTReformatter
from misstep_tripost.editing import edit_replies
from misstep_tripost.families import FAMILIES
from misstep_tripost.improvers import ScriptedImprover
from misstep_tripost.source import edit_trajectory
from misstep_tripost.tasks import ArithmeticTasks
from misstep_tripost.text import FINAL, Step, render_interaction
from misstep_tripost.verifiers import ScriptedVerifier

FAMILY = FAMILIES["multistep_arithmetic"]


def wrong(steps: list[Step]) -> list[Step]:
    return steps[:-1] + [Step(FINAL, f"So the answer is {FAMILY.answer(steps) + 1}.")]


@pytest.fixture
def tasks() -> list[misstep.Task]:
    return list(ArithmeticTasks(ArithmeticTasks.Options(count=14, depths=[1], seed=3)).load())


def trajectories(tasks: list[misstep.Task], wrong_ones: int, dropped: int = 1) -> list[misstep.Trajectory]:
    """Edited trajectories: the first ``wrong_ones`` tasks answered wrongly (edited by the scripted improver,
    whose update is the gold rationale), the rest right (kept), the last ``dropped`` replies unparsable."""
    replies = []
    for index, task in enumerate(tasks):
        steps = FAMILY.gold(task)
        replies.append(render_interaction(INFO, [wrong(steps) if index < wrong_ones else steps], []))
    replies[len(replies) - dropped:] = ["no idea"] * dropped
    edits = edit_replies(tasks, replies, ScriptedVerifier().critique, ScriptedImprover().improve)
    return [edit_trajectory(edit, 0, "student", 1.0) for edit in edits]


def test_rebalancing_a_realistic_mix_gives_the_reference_ratio() -> None:
    tasks = list(ArithmeticTasks(ArithmeticTasks.Options(count=40, depths=[1], seed=5)).load())
    reformatter = TriPosTReformatter()
    examples = list(reformatter.reformat(trajectories(tasks, 24, dropped=2), {t.id: t for t in tasks}))
    report = reformatter.report()
    assert report["trajectories"] == {"edited": 24, "kept": 14, "dropped": 2}
    # 24 improvement items; non-improvement: the 24 updates with their "all correct" feedback and 14 kept answers
    assert (report["improvement"], report["non_improvement_available"], report["non_improvement"]) == (24, 38, 16)
    # gold: every task's but the 14 kept ones' (a kept interaction is the gold rationale with its feedback);
    # an edited interaction is not, though its last per-turn item is (the reference compares whole ones)
    assert (report["gold_available"], report["gold"]) == (26, 16)
    kinds = Counter(e.metadata["kind"] for e in examples)
    assert kinds == {"improvement": 24, "non_improvement": 16, "gold": 16}  # 1.5 : 1 : 1
    again = list(TriPosTReformatter().reformat(trajectories(tasks, 24, dropped=2), {t.id: t for t in tasks}))
    assert [e.id for e in again] == [e.id for e in examples]  # seeded


def test_weights_from_the_first_feedback_only_where_the_reference_puts_them(tasks: list[misstep.Task]) -> None:
    mix = trajectories(tasks, 4)
    edited = {t.id for t in mix if t.metadata["outcome"] == "edited"}
    options = TriPosTReformatter.Options(improve_data_ratio=-1)  # every item, to see each kind
    examples = list(TriPosTReformatter(options).reformat(mix, {t.id: t for t in tasks}))
    weighted = 0
    for example in examples:
        user, assistant = example.messages
        assert user.role == "user" and user.content.startswith("Q: ") and assistant.trained
        source = example.id.rsplit("/", 1)[0]
        if example.metadata["kind"] == "improvement":
            assert assistant.content.count("Feedback:") == 1 and "\nUpdated Answer: " in assistant.content
            assert not assistant.content.endswith("correct.")  # the update's own feedback is the next item
        if example.metadata["kind"] == "gold" or source not in edited:  # gold and first-try-correct: weight 1
            assert (assistant.weight, assistant.spans) == (1.0, [])
        else:  # from an improvement (its updates and its last attempt): 1.5 from "\nFeedback:" on, end included
            weighted += 1
            start = assistant.content.index("\nFeedback:")
            assert assistant.weight == 1.5 and assistant.spans == [misstep.WeightSpan(start=0, end=start, weight=1.0)]
    assert weighted == 2 * len(edited)
    task = tasks[0]
    bad = wrong(FAMILY.gold(task))
    cut = mix[0].model_copy(update={"metadata": {**mix[0].metadata, "outcome": "cut"}, "messages": [
        mix[0].messages[0], misstep.Message(role="assistant", content=render_interaction(
            INFO, [bad], ScriptedVerifier().critique([task], [bad])))]})
    [example] = TriPosTReformatter(TriPosTReformatter.Options(improve_data_ratio=-1, gold=False)).reformat([cut], {})
    assert example.metadata["kind"] == "non_improvement" and example.messages[1].weight == 1.5  # an error feedback


def test_rebalancing_can_be_disabled_and_whole_interactions_kept(tasks: list[misstep.Task]) -> None:
    reformatter = TriPosTReformatter(TriPosTReformatter.Options(improve_data_ratio=-1, per_turn=False,
                                                                self_improve_section_weight=1.0, gold=False))
    examples = list(reformatter.reformat(trajectories(tasks, 4), {}))
    report = reformatter.report()
    assert (report["improvement"], report["non_improvement"], report["gold"]) == (4, 9, 0)
    improvements = [e for e in examples if e.metadata["kind"] == "improvement"]
    assert all(e.messages[1].content.count("Feedback:") == 2 and not e.messages[1].spans for e in improvements)


def test_repeated_interactions_are_removed_and_options_checked(tasks: list[misstep.Task]) -> None:
    reformatter = TriPosTReformatter(TriPosTReformatter.Options(improve_data_ratio=-1))
    twice = trajectories(tasks, 4) * 2
    examples = list(reformatter.reformat(twice, {t.id: t for t in tasks}))
    assert reformatter.report()["duplicates"] == 4 + 9  # whole interactions; the dropped one is not counted
    items = [(e.messages[0].content, e.messages[1].content) for e in examples if e.metadata["kind"] != "gold"]
    assert len(set(items)) == len(items) == 4 + 4 + 9
    golds = {(e.messages[0].content, e.messages[1].content) for e in examples if e.metadata["kind"] == "gold"}
    assert len(golds & set(items)) == 4  # an update's last item may equal its gold rationale, as in the reference
    with pytest.raises(ValueError, match="improve_data_ratio"):
        TriPosTReformatter.Options(improve_data_ratio=0)
    with pytest.raises(misstep.ComponentError, match="tasks"):
        list(TriPosTReformatter().reformat(trajectories(tasks, 1), {}))


def test_trajectories_with_native_tool_calls_are_refused(tasks: list[misstep.Task]) -> None:
    call = misstep.ToolCall(id="call_0", name="calculate", arguments={"expression": "2+3"})
    native = misstep.Trajectory(id="n#0", task_id=tasks[0].id, messages=[
        misstep.Message(role="user", content=tasks[0].question), misstep.Message(role="assistant", tool_calls=[call]),
        misstep.Message(role="tool", content="5", tool_call_id="call_0"), misstep.Message(role="assistant", content="5")])
    with pytest.raises(misstep.ComponentError, match="trajectory 'n#0' has native tool calls; the tripost reformatter"):
        list(TriPosTReformatter().reformat([*trajectories(tasks, 2), native], {t.id: t for t in tasks}))
