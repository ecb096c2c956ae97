"""Scripted rationales and verifiers: every shared gold rationale passes, injected errors are pinpointed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from misstep_tripost import arithmetic, sorting
from misstep_tripost.checking import complete, verify
from misstep_tripost.tasks import ArithmeticTasks, SortingTasks, TriPosTFile
from misstep_tripost.text import Feedback, parse_feedback, parse_steps, render_steps, split_turns

ARITHMETIC_Q = "((-9 + -6 + 8 * 1) * (-9 - -1 * -6 - 6)) ="
SORTING_Q = "Sort the following words alphabetically:\nList: dot barn delta damp"


def gold(question: str) -> str:
    machine = arithmetic.ArithmeticMachine(question) if "List:" not in question else sorting.SortingMachine(question)
    return render_steps(complete(machine))


def check(question: str, rationale: str) -> Feedback:
    steps = parse_steps(rationale)
    assert steps is not None
    machine = arithmetic.ArithmeticMachine(question) if "List:" not in question else sorting.SortingMachine(question)
    return verify(machine, steps)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- the shared data --------------------------------------------------------------------------------


def test_every_shared_arithmetic_rationale_is_accepted_and_rewritten(shared: Path) -> None:
    data = rows(shared / "raw" / "multistep_arithmetic_scripted_rationales.jsonl")
    assert len(data) == 960
    different = []
    for row in data:
        question = row["question"].removeprefix("Q: ")
        assert check(question, row["rationale"]).correct, row["rationale"]
        assert arithmetic.solve(question) == int(row["correct_answer"])
        if gold(question) != row["rationale"]:
            different.append(row["rationale"])
    # the one difference: the reference replaces two identical operations "(2 * 1)" in one step
    assert len(different) == 1 and "= (((2 * 1) + -4) - ((2 * 1) * -9)) = ((2 + -4) - (2 * -9))" in different[0]


def test_every_shared_word_sorting_rationale_is_accepted_after_renumbering(shared: Path) -> None:
    data = rows(shared / "raw" / "word_sorting_scripted_rationales.jsonl")
    raw_rejected = [row for row in data if not check(row["question"].removeprefix("Q: "), row["rationale"]).correct]
    tasks = list(TriPosTFile(TriPosTFile.Options(path=str(shared / "raw" / "word_sorting_scripted_rationales.jsonl"))).load())
    assert len(tasks) == 1880
    for task in tasks:
        assert check(task.question, task.metadata["rationale"]).correct
        assert task.metadata["rationale"] == gold(task.question)  # the script writes exactly the reference
    renumbered = [task for task in tasks if task.metadata["renumbered"]]
    assert len(renumbered) == len(raw_rejected) == 26  # the reference's duplicate sub-step ids
    feedback = check(raw_rejected[0]["question"].removeprefix("Q: "), raw_rejected[0]["rationale"])
    assert feedback.reason.startswith("this step should be numbered (") and feedback.segment == f"({feedback.error_step})"


def test_shared_training_and_validation_files_load_with_their_gold(shared: Path) -> None:
    train = shared / "training" / "multistep_arithmetic" / "multistep_arithmetic_baseline_rationale_l3-4d2-22.jsonl"
    tasks = list(TriPosTFile(TriPosTFile.Options(path=str(train))).load())
    assert len(tasks) == 550 and {t.metadata["difficulty"] for t in tasks} == {"seen"}
    assert all(check(t.question, t.metadata["rationale"]).correct for t in tasks)
    raw = shared / "raw" / "multistep_arithmetic_scripted_rationales.jsonl"
    unseen = list(TriPosTFile(TriPosTFile.Options(path=str(raw), subset="validation", difficulty="unseen")).load())
    assert len(unseen) == 240  # lengths 5-6 or depth [2, 2, 2]
    assert all(t.metadata["length"] >= 5 or len(t.metadata["depth_levels"]) == 3 for t in unseen)
    dates = list(TriPosTFile(TriPosTFile.Options(path=str(shared / "raw" / "date_understanding_codex_rationales_cleaned.jsonl"))).load())
    assert len(dates) == 298 and sum("rationale" not in t.metadata for t in dates) == 2  # malformed Codex rationales
    assert dates[0].answer == "E" and dates[0].question.endswith("(F) 11/23/2002") and "\nOptions:\n(A)" in dates[0].question


# --- generated tasks ----------------------------------------------------------------------------------


def test_generated_tasks_are_seeded_disjoint_and_verified() -> None:
    options = dict(count=30, lengths=[2, 3, 5], depths=[0, 1, 3])
    first = list(ArithmeticTasks(ArithmeticTasks.Options(**options)).load())
    again = list(ArithmeticTasks(ArithmeticTasks.Options(**options)).load())
    test = list(ArithmeticTasks(ArithmeticTasks.Options(**options, split="test")).load())
    assert [t.question for t in first] == [t.question for t in again]
    assert not {t.question for t in first} & {t.question for t in test}
    for task in first + test:
        assert check(task.question, task.metadata["rationale"]).correct
        assert task.metadata["difficulty"] == ("seen" if task.metadata["length"] in (3, 4)
                                               and len(task.metadata["depth_levels"]) in (1, 2) else "unseen")
    words = list(SortingTasks(SortingTasks.Options(count=30, words=[1, 2, 9, 15])).load())
    for task in words:
        assert check(task.question, task.metadata["rationale"]).correct
        assert task.answer == sorted(sorting.question_words(task.question))
        assert task.metadata["difficulty"] == ("seen" if task.metadata["words"] <= 7 else "unseen")


def test_sorting_handles_prefixes_punctuation_and_deep_ties() -> None:
    question = sorting.make_question(["o'neill", "o", "oak", "oaken", "it&t", "oakes", "u.s.a"])
    rationale = gold(question)
    assert check(question, rationale).correct
    assert '"o"="" (-96)' in rationale and '"o\'neill"="\'" (-57)' in rationale
    assert rationale.endswith("So the answer is: it&t o o'neill oak oaken oakes u.s.a.")
    ids = [step.id for step in parse_steps(rationale)]
    assert len(ids) == len(set(ids))


# --- injected errors ----------------------------------------------------------------------------------


def test_wrong_sum_is_pinpointed() -> None:
    wrong = gold(ARITHMETIC_Q).replace("(-15 - 6) = -21", "(-15 - 6) = -20")
    feedback = check(ARITHMETIC_Q, wrong)
    assert (feedback.error_step, feedback.segment) == ("3", "(-15 - 6) = -20")
    assert feedback.text() == ('Step (1) to step (2) are correct. In step (3) the part "(-15 - 6) = -20" is incorrect. '
                               "This is because there is a calculation error, since (-15 - 6) is not equal to -20.")


def test_order_of_operations_error_is_a_calculation_error() -> None:
    wrong = gold(ARITHMETIC_Q).replace("= ((-9 + -6) + (8 * 1)) = (-15 + (8 * 1)) = (-15 + 8) = -7", "= (-15 + 8 * 1) = -3")
    feedback = check(ARITHMETIC_Q, wrong)
    assert (feedback.error_step, feedback.segment, feedback.last_correct) == ("2", "(-15 + 8 * 1) = -3", "1")
    assert feedback.text().startswith("Step (1) is correct. In step (2)")


def test_wrong_substitution_is_pinpointed() -> None:
    wrong = gold(ARITHMETIC_Q).replace("(A * B) = (-7 * -21) = 147", "(A * B) = (-7 * 21) = -147").replace("is 147", "is -147")
    feedback = check(ARITHMETIC_Q, wrong)
    assert (feedback.error_step, feedback.segment) == ("4", "(A * B) = (-7 * 21)")
    assert feedback.reason == "this substitution is inconsistent with the results in the previous steps: B = -21 in step (3)"


def test_skipped_group_is_pinpointed() -> None:
    lines = gold(ARITHMETIC_Q).splitlines()
    skipped = "\n".join([lines[0], lines[1], lines[3].replace("(4)", "(3)"), lines[4]])
    feedback = check(ARITHMETIC_Q, skipped)
    assert (feedback.error_step, feedback.reason) == ("3", "B has not been calculated in previous steps")
    assert feedback.segment == "(A * B) = (-7 * -21)"


def test_wrong_partition_definition_and_final_response_are_pinpointed() -> None:
    text = gold(ARITHMETIC_Q)
    partition = check(ARITHMETIC_Q, text.replace("B = (-9 - -1 * -6 - 6).", "B = (-9 - -1 * -6 + 6)."))
    assert partition.error_step == "1" and partition.last_correct is None
    assert partition.reason.startswith("it is not consistent with the original equation")
    assert partition.text().startswith('In step (1) the part "This equation can be written as')
    definition = check(ARITHMETIC_Q, text.replace("calculate B = (-9 - -1 * -6 - 6)", "calculate B = (-9 - -1 * -6)"))
    assert (definition.error_step, definition.reason) == ("3", "B = (-9 - -1 * -6 - 6) according to step (1)")
    final = check(ARITHMETIC_Q, text.replace("So the answer is 147.", "So the answer is 148."))
    assert (final.error_step, final.segment) == ("Final response", "the answer is 148.")
    assert final.reason == "this answer is inconsistent with the result in step (4)"
    unfinished = check(ARITHMETIC_Q, text.replace(" = (-15 - 6) = -21.", " = (-15 - 6)."))
    assert unfinished.error_step == "3" and "not finished" in unfinished.reason
    invalid = check(ARITHMETIC_Q, text.replace("= ((-9 - 6) - 6)", "= ((-9 - 6 - 6)"))
    assert invalid.error_step == "3" and invalid.reason.startswith("it is an invalid equation")


def test_wrong_letter_and_alphabet_index_are_pinpointed() -> None:
    text = gold(SORTING_Q)
    letter = check(SORTING_Q, text.replace('"delta"="e" (5)', '"delta"="l" (5)'))
    assert (letter.error_step, letter.segment, letter.reason) == ("3", '"delta"="l" (5)', 'the second letter of "delta" is "e"')
    index = check(SORTING_Q, text.replace('"barn"="b" (2)', '"barn"="b" (3)'))
    assert (index.error_step, index.reason) == ("1", 'the alphabetical order of "b" is 2')
    missing = check(SORTING_Q, text.replace(', "damp"="d" (4).', "."))
    assert (missing.error_step, missing.reason) == ("1", '"damp" is missing')


def test_wrong_order_is_pinpointed() -> None:
    text = gold(SORTING_Q)
    order = check(SORTING_Q, text.replace('(1) "damp" < (5) "delta" < (15) "dot"', '(1) "damp" < (15) "dot" < (5) "delta"'))
    assert (order.error_step, order.last_correct) == ("3.1", "3")
    assert order.segment == '(15) "dot" < (5) "delta"' and order.reason == "the words are not sorted in ascending order"
    merged = check(SORTING_Q, text.replace('(4) Hence, we have "barn" < "damp" < "delta" < "dot".',
                                           '(4) Hence, we have "barn" < "delta" < "damp" < "dot".'))
    assert (merged.error_step, merged.reason) == ("4", '"damp" should come before "delta"')
    answer = check(SORTING_Q, text.replace("barn damp delta dot.", "barn damp dot delta."))
    assert answer.error_step == "Final response"


def test_skipped_subpart_and_wrong_numbering_are_pinpointed() -> None:
    question = sorting.make_question(["cab", "cat", "bee", "bat"])
    lines = gold(question).splitlines()
    # the ties [cab ? cat] and [bee ? bat] are sorted in steps (3) and (4); skip the first one
    assert lines[2].startswith("(3) Now sort this subpart [\"bee\" ? \"bat\"]")
    skipped = "\n".join(lines[:2] + [line for line in lines[2:] if not line.startswith("(3")])
    feedback = check(question, skipped)
    assert feedback.error_step == "4" and feedback.reason == "this step should be numbered (3)"
    renamed = "\n".join(lines[:2] + [line.replace("(4", "(3", 1) if line.startswith("(4") else line
                                     for line in lines[2:] if not line.startswith("(3")])
    feedback = check(question, renamed)
    assert feedback.error_step == "3" and feedback.reason == 'the next subpart to sort is ["bee" ? "bat"]'


def test_corrupted_rationales_never_pass_with_a_wrong_answer() -> None:
    """Change one digit anywhere: the verifier never crashes, and never accepts a wrong final answer."""
    rng = random.Random(0)
    tasks = list(ArithmeticTasks(ArithmeticTasks.Options(count=40)).load())
    tasks += list(SortingTasks(SortingTasks.Options(count=20, words=[3, 6, 9])).load())
    flagged = 0
    for task in tasks:
        text = task.metadata["rationale"]
        for position in rng.sample([i for i, c in enumerate(text) if c.isdigit()], 5):
            corrupted = text[:position] + str((int(text[position]) + 1) % 10) + text[position + 1:]
            steps = parse_steps(corrupted)
            if steps is None:
                continue
            feedback = check(task.question, corrupted)
            family = arithmetic if "List:" not in task.question else sorting
            assert not feedback.correct or family.answer(steps) == task.answer
            flagged += not feedback.correct
    assert flagged > 200


# --- the text format ------------------------------------------------------------------------------------


@pytest.mark.parametrize("feedback", [
    Feedback(error_step=None, last_correct="6"),
    Feedback(error_step="2", last_correct="1", segment="(15 - 8) = 8", reason="there is a calculation error"),
    Feedback(error_step="1", last_correct=None, segment='"a"="b" (2)', reason='the first letter of "a" is "a"'),
    Feedback(error_step="Final response", last_correct="6.2.1", segment="the answer is 3.", reason="it is wrong"),
])
def test_feedback_text_round_trips(feedback: Feedback) -> None:
    assert parse_feedback(feedback.text()) == feedback
    assert parse_feedback("Feedback: " + feedback.text()) == feedback


def test_malformed_feedback_and_steps_are_none() -> None:
    assert parse_feedback("Looks good to me.") is None
    assert parse_feedback("In step 2 the sum is wrong.") is None
    assert parse_steps("(1) a step\nno number here\n(Final response) So the answer is 3.") is None
    assert parse_steps("(1) a step") is None  # no final response


def test_interactions_split_into_attempts_and_feedback() -> None:
    text = ("Answer: Let's think step by step.\n(1) x\n(Final response) So the answer is 1.\n"
            "Feedback: In step (1) the part \"x\" is incorrect. This is because y.\n"
            "Updated Answer: Let's think step by step.\n(1) z\n(Final response) So the answer is 2.")
    turns = split_turns(text)
    assert [t.body for t in turns] == ["(1) x\n(Final response) So the answer is 1.", "(1) z\n(Final response) So the answer is 2."]
    assert turns[0].feedback is not None and turns[1].feedback is None
    assert parse_feedback(turns[0].feedback) == Feedback("1", None, "x", "y")
