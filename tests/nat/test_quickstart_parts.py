"""The quickstart's model-free parts: the word-problem generator and the scripted teacher."""

import random
from collections import Counter

import pytest

import misstep
from misstep import ComponentError, Message, PromptTemplate, Sampling
from misstep_nat.arithmetic import TEMPLATES, parse_question
from misstep_nat.teacher import mistype


def tasks(**options):
    return list(misstep.get_plugins().create("task", "arithmetic-word-problems", options).load())


def teacher(**options):
    return misstep.get_plugins().create("backend", "scripted-teacher", options)


def test_generator_is_seeded_and_splits_never_overlap():
    train = tasks(count=300, seed=1)
    assert [t.question for t in train] == [t.question for t in tasks(count=300, seed=1)]
    assert [t.question for t in train] != [t.question for t in tasks(count=300, seed=2)]
    test = tasks(count=300, seed=1, split="test")
    assert not {t.question for t in train} & {t.question for t in test}
    assert len({t.question for t in train}) == 300 and len({t.id for t in train}) == 300
    assert {t.split for t in test} == {"test"} and {t.dataset for t in test} == {"arithmetic"}
    assert {t.metadata["steps"] for t in tasks(count=50, steps=[1])} == {1}
    assert Counter(t.metadata["template"] for t in train).keys() == {t.key for t in TEMPLATES if len(t.steps) < 3}
    three = tasks(count=60, steps=[3])
    assert {t.metadata["steps"] for t in three} == {3}
    assert Counter(t.metadata["template"] for t in three).keys() == {t.key for t in TEMPLATES if len(t.steps) == 3}
    assert all(parse_question(t.question).solve() == t.answer for t in three)


@pytest.mark.parametrize(("question", "answer"), [
    ("Ben has 5 apples. Ben gets 3 more apples. How many apples does Ben have now?", 8),
    ("Anna has 30 coins. Anna buys 4 boxes with 6 coins in each box. How many coins does Anna have now?", 54),
    ("Hugo earns 12 dollars per hour and works for 5 hours. Hugo spends 17 dollars on books. "
     "How many dollars does Hugo have left?", 43),
    ("Ines puts 42 shells into 6 equal bags. Ines gives 4 bags to a friend. How many shells does the friend get?",
     28),
    ("Emma has 27 cookies and loses 3 of them. Emma shares the rest equally among 4 friends. "
     "How many cookies does each friend get?", 6),
    ("Farid has 18 coins. Farid buys 8 boxes with 8 coins in each box and then gives away 71 coins. "
     "How many coins does Farid have left?", 11),
    ("Jonas shares 24 pencils equally among 6 friends. Each friend then gets 2 more pencils. "
     "How many pencils do 3 of the friends have together?", 18),
])
def test_questions_are_read_back_and_solved(question, answer):
    assert parse_question(question).solve() == answer
    assert parse_question("[Good] Question: " + question + ". Solve it.").solve() == answer
    assert parse_question("How many legs does a spider have?") is None


def test_every_generated_answer_is_a_whole_number():
    for task in tasks(count=500, seed=3):
        assert isinstance(task.answer, int) and task.answer >= 0
        assert parse_question(task.question).solve() == task.answer


def conversation(question):
    return PromptTemplate().render(question)


QUESTION = "Anna has 30 coins. Anna buys 4 boxes with 6 coins in each box. How many coins does Anna have now?"


def test_correct_turns_follow_nat_react_format():
    perfect = teacher(error_rate=0, error_slope=0)
    messages = conversation(QUESTION)
    first = perfect.generate([messages], [Sampling(temperature=0.7, seed=1)])[0]
    assert first == ("Thought: Anna buys 4 boxes with 6 coins in each box, so I need to multiply 4 by 6.\n"
                     "Action: calculate[4 * 6]")
    messages += [Message(role="assistant", content=first), Message(role="user", content="Observation: 24")]
    second = perfect.turn(messages, Sampling(temperature=0.7, seed=2))
    assert second == ("Thought: Anna already had 30 coins, so I need to add 30 and 24.\n"
                      "Action: calculate[30 + 24]")
    messages += [Message(role="assistant", content=second), Message(role="user", content="Observation: 54")]
    assert perfect.turn(messages, Sampling()) == "Thought: The answer is 54.\nAction: finish[54]"


def test_observations_are_used_as_they_came():
    perfect = teacher(error_rate=0, error_slope=0)
    messages = conversation(QUESTION) + [
        Message(role="assistant", content="Thought: x\nAction: calculate[4 / 6]"),
        Message(role="user", content="Observation: 2/3"),
    ]
    assert perfect.turn(messages, Sampling()).endswith("Action: calculate[30 + (2/3)]")
    messages[-1] = Message(role="user", content="Observation: Error: division by zero")
    assert perfect.turn(messages, Sampling()).endswith("Action: finish[30]")


@pytest.mark.parametrize(("kind", "check"), [
    ("wrong-operation", lambda turn: "calculate[4 + 6]" in turn and "add 4 and 6" in turn),
    ("wrong-operand", lambda turn: "calculate[30 * 6]" in turn or "calculate[4 * 30]" in turn),
    ("copying", lambda turn: "calculate[" in turn and "calculate[4 * 6]" not in turn),
    ("premature-finish", lambda turn: turn == "Thought: The answer is 30.\nAction: finish[30]"),
])
def test_each_kind_of_mistake(kind, check):
    clumsy = teacher(error_rate=1, errors={kind: 1.0})
    turns = {clumsy.turn(conversation(QUESTION), Sampling(temperature=0.5, seed=seed)) for seed in range(20)}
    assert all(check(turn) for turn in turns), turns


def test_final_answer_can_only_be_miscopied():
    clumsy = teacher(error_rate=1)
    messages = conversation("Ben has 5 apples. Ben gets 3 more apples. How many apples does Ben have now?") + [
        Message(role="assistant", content="Thought: x\nAction: calculate[5 + 3]"),
        Message(role="user", content="Observation: 8"),
    ]
    answers = {clumsy.turn(messages, Sampling(seed=seed)) for seed in range(30)}
    assert all(a.startswith("Thought: The answer is ") and "finish[8]" not in a for a in answers)


def test_mistype_changes_a_number_the_way_a_slip_would():
    rng = random.Random(0)
    slips = {mistype("54", rng) for _ in range(50)}
    assert "54" not in slips and "45" in slips
    assert all(len(s) == 2 and s.isdigit() for s in slips)


def test_deterministic_given_seed_and_sampling():
    model = teacher()
    requests = [Sampling(temperature=0.7, seed=seed) for seed in range(40)]
    first = model.generate([conversation(QUESTION)] * 40, requests)
    assert first == model.generate([conversation(QUESTION)] * 40, requests)
    assert len(set(first)) > 1
    unseeded = teacher(seed=3).generate([conversation(QUESTION)], [Sampling(temperature=0.7)])
    assert unseeded == teacher(seed=3).generate([conversation(QUESTION)], [Sampling(temperature=0.7)])


def test_mistakes_rise_with_temperature():
    model = teacher()
    correct = teacher(error_rate=0, error_slope=0).turn(conversation(QUESTION), Sampling())
    rates = []
    for temperature in (0.0, 0.2, 0.5, 0.7):
        turns = model.generate([conversation(QUESTION)] * 400, [Sampling(temperature, seed=s) for s in range(400)])
        rates.append(sum(turn != correct for turn in turns) / 400)
    assert rates == sorted(rates) and rates[0] < 0.1 and rates[-1] > 0.2
    assert model.error_chance(0.7) == pytest.approx(0.05 + 0.35 * 0.7)


def test_unknown_questions_are_refused_with_advice():
    with pytest.raises(ComponentError, match="only solves the arithmetic-word-problems questions"):
        teacher().generate([conversation("How tall is Mount Everest?")], [Sampling()])
