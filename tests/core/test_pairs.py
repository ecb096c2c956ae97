"""preference_pairs: (success, failure) pairs of the same task, with the options the DPO data needs."""

from misstep import Message, ToolCall, Trajectory, Verdict, preference_pairs

PROMPT = [Message(role="system", content="Use the tools."), Message(role="user", content="What is 3 * 4?")]


def call(expression: str, call_id: str) -> Message:
    return Message(role="assistant", tool_calls=[ToolCall(id=call_id, name="calculate",
                                                          arguments={"expression": expression})])


def trajectory(task: str, number: int, turns: list[Message], score: float) -> Trajectory:
    return Trajectory(id=f"{task}#{number}", task_id=task, messages=[*PROMPT, *turns], prompt_len=len(PROMPT),
                      verdict=Verdict(correct=score >= 1.0, score=score))


def labelled_set() -> list[Trajectory]:
    shared = [call("3 * 4", "c1"), Message(role="tool", content="12", tool_call_id="c1", name="calculate")]
    return [
        trajectory("a", 0, [*shared, Message(role="assistant", content="12")], 1.0),
        trajectory("a", 1, [*shared, Message(role="assistant", content="13")], 0.0),
        trajectory("a", 2, [Message(role="assistant", content="7")], 0.2),
        trajectory("b", 0, [Message(role="assistant", content="12")], 1.0),  # no failure: no pair
        trajectory("c", 0, [Message(role="assistant", content="9")], 0.0),  # no success: no pair
        Trajectory(id="a#3", task_id="a", messages=PROMPT),  # no verdict: ignored
    ]


def test_only_success_failure_pairs_of_one_task():
    pairs = list(preference_pairs(labelled_set()))
    assert [(p.metadata["chosen_id"], p.metadata["rejected_id"]) for p in pairs] == [("a#0", "a#1"), ("a#0", "a#2")]
    assert all(p.metadata["task_id"] == "a" and p.metadata["chosen_reward"] == 1.0 for p in pairs)


def test_shared_prefix_prompt_is_the_longest_common_prefix_up_to_an_assistant_turn():
    diverging, whole = preference_pairs(labelled_set())
    assert diverging.prompt == labelled_set()[0].messages[:4]  # the shared call and its result are prompt
    assert [m.content for m in diverging.chosen] == ["12"] and [m.content for m in diverging.rejected] == ["13"]
    assert whole.prompt == PROMPT and whole.chosen[0].tool_calls[0].id == "c1"
    own, _ = preference_pairs(labelled_set(), shared_prefix=False)
    assert own.prompt == PROMPT and len(own.chosen) == 3 and len(own.rejected) == 3


def test_margin_and_per_task_draws():
    assert [p.metadata["rejected_id"] for p in preference_pairs(labelled_set(), margin=0.9)] == ["a#1"]
    many = [trajectory("a", n, [Message(role="assistant", content=str(n))], float(n == 0)) for n in range(6)]
    first = [p.id for p in preference_pairs(many, per_task=2, seed=1)]
    assert len(first) == 2 and first == [p.id for p in preference_pairs(many, per_task=2, seed=1)]
    others = {tuple(p.id for p in preference_pairs(many, per_task=2, seed=s)) for s in range(8)}
    assert len(others) > 1  # the seed changes the draw
    assert len(list(preference_pairs(many, per_task=10))) == 5


def test_different_prompts_are_not_paired_without_shared_prefix():
    good, bad = labelled_set()[:2]
    bad = bad.model_copy(update={"messages": [PROMPT[0], Message(role="user", content="Other?"), *bad.messages[2:]]})
    assert list(preference_pairs([good, bad], shared_prefix=False)) == []
    [pair] = preference_pairs([good, bad])  # the shared system turn is not followed by assistant turns
    assert pair.prompt == [] and pair.chosen[:2] == PROMPT and pair.rejected[1].content == "Other?"
