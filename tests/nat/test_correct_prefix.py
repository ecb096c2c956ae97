"""``correct-prefix`` and NAT's ``correct_prefix`` option on hand-made trajectories with known first wrong steps."""

from __future__ import annotations

import misstep
from misstep import Message


def create(name, **options):
    return misstep.get_plugins().create("reformatter", name, options)


STEPS = ["Thought: 4 boxes of 3.\nAction: calculate[4 * 3]", "Thought: Add 5.\nAction: calculate[12 + 6]",
         "Thought: Done.\nAction: finish[18]"]


def trajectory(task_id: str, correct: bool, wrong: int | None, sample: int = 0) -> misstep.Trajectory:
    """A three-step trajectory (calculate, calculate, finish) whose verdict names its first wrong step."""
    prompt = misstep.PromptTemplate().render("Ann has 5 pens and buys 4 boxes of 3 pens. How many now?")
    turns = [STEPS[0], "Observation: 12", STEPS[1], "Observation: 18", STEPS[2]]
    messages = [*prompt, *(Message(role="user" if t.startswith("Observation") else "assistant", content=t)
                           for t in turns)]
    credit = misstep.StepCredit(values=[1.0, 0.0, 0.0] if wrong else [1.0, 1.0, 1.0], start=1.0, branches=4)
    verdict = misstep.Verdict(correct=correct, steps=credit, first_wrong_step=wrong)
    return misstep.Trajectory(id=f"{task_id}#{sample}", task_id=task_id, messages=messages, prompt_len=len(prompt),
                              verdict=verdict, provenance=misstep.Provenance(temperature=0.5, sample=sample))


def agent_turns(example):
    return [(m.role, m.content, m.trained, m.weight) for m in example.messages[3:]]


def test_a_negative_trains_its_steps_before_the_first_wrong_one():
    examples = list(create("correct-prefix").reformat([trajectory("p", True, None), trajectory("n", False, 2)], {}))
    positive, negative = examples
    assert len(agent_turns(positive)) == 5 and all(m.weight == 1 for m in positive.messages)  # whole, as NUT
    # step 1 trained, its observation masked, the wrong step 2 kept untrained, the rest left out
    assert agent_turns(negative) == [("assistant", STEPS[0], True, 1.0), ("user", "Observation: 12", False, 1.0),
                                     ("assistant", STEPS[1], True, 0.0)]
    assert negative.messages[:3] == positive.messages[:3]  # no hint
    assert negative.label == "negative"


def test_the_wrong_step_can_be_an_unlikelihood_term():
    example = next(iter(create("correct-prefix", wrong_weight=-1).reformat([trajectory("n", False, 2)], {})))
    assert agent_turns(example)[-1] == ("assistant", STEPS[1], True, -1.0)


def test_negatives_without_a_usable_prefix_are_dropped_with_their_reason():
    data = [trajectory("a", False, None), trajectory("b", False, 1), trajectory("c", False, 3)]
    data[0] = data[0].model_copy(update={"verdict": misstep.Verdict(correct=False)})  # never valued
    reformatter = create("correct-prefix")
    examples = list(reformatter.reformat(data, {}))
    assert [e.id for e in examples] == ["c#0"] and len(agent_turns(examples[0])) == 5
    assert reformatter.report()["dropped"] == {
        "negative without a first wrong step (value its steps with the step-values stage)": 1,
        "negative wrong at its first step: nothing to train (wrong_weight 0)": 1}
    # with an unlikelihood weight the first step alone is trained (pushed down)
    assert [e.id for e in create("correct-prefix", wrong_weight=-0.5).reformat(data, {})] == ["b#0", "c#0"]


def test_nat_trains_a_negatives_correct_prefix_under_the_positive_hint():
    nat = create("nat", correct_prefix=True)
    examples = list(nat.reformat([trajectory("p", True, None), trajectory("n", False, 2)], {}))
    assert [e.id for e in examples] == ["p#0", "n#0", "n#0#correct-prefix"]
    plain = create("nat")
    positive, negative, prefix = examples
    assert [e.messages for e in (positive, negative)] == [e.messages for e in plain.reformat(
        [trajectory("p", True, None), trajectory("n", False, 2)], {})]  # NAT's own examples unchanged
    assert prefix.messages[:3] == positive.messages[:3]  # the positive hint
    assert agent_turns(prefix) == agent_turns(next(iter(create("correct-prefix").reformat(
        [trajectory("n", False, 2)], {}))))
    assert prefix.metadata["class"] == "positive" and prefix.metadata["part"] == "correct-prefix"
    assert nat.report()["added"] == {"correct-prefix": 1} and nat.report()["kept"] == {"positive": 1, "negative": 1}


def test_a_wrong_step_inside_a_message_is_weighted_by_spans():
    text = "Answer: Let's think step by step.\n(1) 2 + 3 = 5\n(2) 5 * 2 = 11\n(Final response) So the answer is 11."
    start = text.index("(2)")
    end = text.index("\n(Final")
    spans = [misstep.StepSpan(message=1, start=text.index("(1)"), end=start - 1),
             misstep.StepSpan(message=1, start=start, end=end), misstep.StepSpan(message=1, start=end + 1)]
    verdict = misstep.Verdict(correct=False, first_wrong_step=2,
                              steps=misstep.StepCredit(values=[1.0, 0.0, 0.0], spans=spans))
    item = misstep.Trajectory(id="t", task_id="t", prompt_len=1, verdict=verdict, messages=[
        Message(role="user", content="Q: (2 + 3) * 2"), Message(role="assistant", content=text)])
    (turn,) = misstep.correct_prefix(item, wrong_weight=-1)
    assert turn.weight == 0.0  # the text after the wrong step (and the closing token) is not trained
    assert [(s.start, s.end, s.weight) for s in turn.spans] == [(0, start, 1.0), (start, end, -1.0)]
