"""The editing loop with the scripted verifier and improver, and with an LLM (canned backend) that
writes good and malformed feedback and updates: outcomes, acceptance rules, counts; never a crash."""

from __future__ import annotations

import misstep
import pytest

from misstep_tripost.arithmetic import INFO
from misstep_tripost.checking import complete
from misstep_tripost.editing import edit_replies
from misstep_tripost.families import FAMILIES
from misstep_tripost.improvers import LLMImprover, ScriptedImprover, parse_update
from misstep_tripost.text import Feedback, correct_feedback, parse_steps, render_interaction, render_steps
from misstep_tripost.verifiers import LLMVerifier, ScriptedVerifier, parse_reply

QUESTION = "((5 * 3 - 8) + (4 + 6 + 5)) ="
TASK = misstep.Task(id="t1", question=QUESTION, answer=22, dataset="multistep_arithmetic")
GOLD = complete(FAMILIES["multistep_arithmetic"].machine(QUESTION))
WRONG = parse_steps(render_steps(GOLD).replace("(15 - 8) = 7.", "(15 - 8) = 8.").replace("(7 + 15) = 22", "(8 + 15) = 23")
                    .replace("is 22.", "is 23."))
STILL_WRONG = parse_steps(render_steps(GOLD).replace("(15 - 8) = 7.", "(15 - 8) = 9.").replace("(7 + 15) = 22", "(9 + 15) = 24")
                          .replace("is 22.", "is 24."))
STEP2_FEEDBACK = Feedback("2", "1", "(15 - 8) = 8", "there is a calculation error, since (15 - 8) is not equal to 8")


def reply(*attempts, feedbacks=()) -> str:
    return render_interaction(INFO, list(attempts), list(feedbacks))


def edit(text: str, improver=None, verifier=None, **options):
    verifier = verifier or ScriptedVerifier()
    improver = improver or ScriptedImprover()
    return edit_replies([TASK], [text], verifier.critique, improver.improve, **options)[0]


def llm(plugins: misstep.Plugins, kind, replies: list[str], **options):
    backend = misstep.BackendRef(use="tripost-canned", replies=replies).resolve(plugins)
    if kind is LLMVerifier:
        return LLMVerifier(LLMVerifier.Options(backend=backend, **options))
    return LLMImprover(use="llm", backend=backend, **options)


# --- scripted verifier and improver -------------------------------------------------------------------------


def test_a_correct_attempt_is_kept_with_the_all_correct_feedback() -> None:
    result = edit(reply(GOLD))
    assert (result.outcome, result.updates) == ("kept", 0)
    assert render_interaction(INFO, result.attempts, result.feedbacks) == reply(GOLD, feedbacks=[correct_feedback(GOLD)])
    assert edit(reply(GOLD, feedbacks=[correct_feedback(GOLD)])).outcome == "kept"


def test_a_wrong_attempt_is_edited_from_its_error_step() -> None:
    result = edit(reply(WRONG))
    assert (result.outcome, result.updates, result.edit_at) == ("edited", 1, 0)
    assert result.attempts == [WRONG, GOLD]
    assert result.feedbacks == [STEP2_FEEDBACK, correct_feedback(GOLD)]


def test_a_wrongly_blamed_correct_attempt_gets_the_verifiers_feedback() -> None:
    result = edit(reply(GOLD, feedbacks=[STEP2_FEEDBACK]))
    assert (result.outcome, result.updates, result.attempts) == ("edited", 0, [GOLD])
    assert result.feedbacks == [correct_feedback(GOLD)]


def test_the_students_own_agreeing_self_correction_is_kept() -> None:
    result = edit(reply(WRONG, GOLD, feedbacks=[STEP2_FEEDBACK, correct_feedback(GOLD)]))
    assert (result.outcome, result.updates, result.attempts) == ("kept", 0, [WRONG, GOLD])


def test_a_disagreeing_student_feedback_is_replaced_and_the_rest_rewritten() -> None:
    blame_step_3 = Feedback("3", "2", "(10 + 5) = 15", "it is wrong")
    result = edit(reply(WRONG, STILL_WRONG, feedbacks=[blame_step_3, correct_feedback(STILL_WRONG)]))
    assert (result.outcome, result.edit_at, result.updates) == ("edited", 0, 1)
    assert result.attempts == [WRONG, GOLD] and result.feedbacks[0] == STEP2_FEEDBACK


def test_unusable_replies_are_dropped_with_a_reason() -> None:
    assert edit("I do not know.").reason == "unparsable"
    assert edit("").reason == "unparsable"
    assert edit(reply(WRONG), max_attempt_words=10).reason == "too long"


# --- an LLM verifier and improver through a backend -------------------------------------------------------


GOOD_FEEDBACK = ('Earliest error step: (2)\nError segment: "(15 - 8) = 8"\n'
                 "Error reason: There is a calculation error, since (15 - 8) is not equal to 8.")
MALFORMED_FEEDBACK = [
    "The answer looks wrong to me.",                                                      # no fields
    'Earliest error step: (9)\nError segment: "(15 - 8) = 8"\nError reason: wrong.',       # no step (9)
    'Earliest error step: (2)\nError segment: "(1 + 1) = 3"\nError reason: wrong.',        # not in step (2)
    'Earliest error step: None\nError segment: None\nError reason: All correct.',          # but the answer is wrong
]


def test_llm_feedback_parses_into_the_feedback_structure(plugins: misstep.Plugins) -> None:
    verifier = llm(plugins, LLMVerifier, [GOOD_FEEDBACK])
    assert verifier.critique([TASK], [WRONG]) == [STEP2_FEEDBACK]
    from tripost_components import CannedBackend
    prompt = CannedBackend.prompts[-1]
    assert "Earliest error step: (2)\nError segment: \"(-15 + 8 * 1) = -3\"" in prompt  # the few-shot examples
    assert prompt.endswith(f"Q: {QUESTION}\nAnswer: Let's think step by step. {INFO}\n{render_steps(WRONG)}")
    verdict = verifier.verify(TASK, reply(WRONG))
    assert (verdict.correct, verdict.prediction, verdict.first_wrong_step) == (False, "23", 2)
    assert verdict.feedback == STEP2_FEEDBACK.text()


def test_right_answers_get_the_all_correct_feedback_without_asking(plugins: misstep.Plugins) -> None:
    from tripost_components import CannedBackend
    verifier = llm(plugins, LLMVerifier, ["never used"])
    assert verifier.critique([TASK], [GOLD]) == [correct_feedback(GOLD)]
    assert CannedBackend.prompts == []
    asking = llm(plugins, LLMVerifier, ["Earliest error step: None\nError segment: None\nError reason: fine."],
                 check_answer=False)
    assert asking.critique([TASK], [GOLD]) == [correct_feedback(GOLD)] and len(CannedBackend.prompts) == 1


@pytest.mark.parametrize("malformed", MALFORMED_FEEDBACK)
def test_malformed_llm_feedback_is_rejected(plugins: misstep.Plugins, malformed: str) -> None:
    assert parse_reply(malformed, WRONG, allow_correct=False) is None
    verifier = llm(plugins, LLMVerifier, [malformed])
    assert verifier.verify(TASK, reply(WRONG)).metrics == {"rejected": 1.0}
    result = edit(reply(WRONG), verifier=verifier)
    assert (result.outcome, result.reason, result.rejected_feedback) == ("dropped", "verifier", 1)


def test_llm_updates_are_parsed_and_accepted_or_rejected(plugins: misstep.Plugins) -> None:
    kept = GOLD[:1]
    continuation = render_steps(GOLD[1:])
    assert parse_update(continuation, kept) == GOLD
    assert parse_update(f"Updated Answer: Let's think step by step. {INFO}\n{render_steps(GOLD)}\nFeedback: ...", kept) == GOLD
    assert parse_update("(2) Let's calculate A = 7.", kept) is None  # no final response
    improver = llm(plugins, LLMImprover, [continuation])
    result = edit(reply(WRONG), improver=improver)
    assert (result.outcome, result.updates, result.rejected_updates, result.attempts) == ("edited", 1, 0, [WRONG, GOLD])
    from tripost_components import CannedBackend
    assert CannedBackend.prompts[-1].endswith(
        f"Feedback: {STEP2_FEEDBACK.text()}\nUpdated Answer: Let's think step by step. {INFO}\n{render_steps(kept)}")


def test_an_update_that_is_not_legitimate_drops_the_interaction_or_is_retried(plugins: misstep.Plugins) -> None:
    unchanged = render_steps(WRONG[1:])  # the erroneous step is not changed: not acceptable
    rewritten = render_steps([GOLD[0].__class__("1", "This equation is easy."), *GOLD[1:]])  # earlier step changed
    replies = ["no steps here", unchanged, rewritten]
    result = edit(reply(WRONG), improver=llm(plugins, LLMImprover, replies), max_updates=4)
    assert (result.outcome, result.reason, result.updates, result.rejected_updates) == (
        "dropped", "rejected update", 1, 1)  # the reference's default: the first bad update ends the editing
    result = edit(reply(WRONG), improver=llm(plugins, LLMImprover, replies), max_updates=4, retry_rejected=True)
    assert (result.outcome, result.reason, result.updates, result.rejected_updates) == ("dropped", "not fixed", 4, 4)


def test_an_update_still_holding_the_quoted_part_is_not_legitimate(plugins: misstep.Plugins) -> None:
    same_part = render_steps([GOLD[1].__class__("2", GOLD[1].text.replace("= 7.", "= 7, not (15 - 8) = 8.")),
                              *GOLD[2:]])
    result = edit(reply(WRONG), improver=llm(plugins, LLMImprover, [same_part]))
    assert (result.outcome, result.reason, result.rejected_updates) == ("dropped", "rejected update", 1)


def test_another_part_of_the_same_step_is_progress(plugins: misstep.Plugins) -> None:
    improver = llm(plugins, LLMImprover, [render_steps(STILL_WRONG[1:]), render_steps(GOLD[1:])])
    result = edit(reply(WRONG), improver=improver)
    assert (result.outcome, result.updates, result.worse) == ("edited", 2, False)
    assert result.attempts == [WRONG, STILL_WRONG, GOLD]
    assert [f.error_step for f in result.feedbacks] == ["2", "2", None]


def test_an_update_whose_error_moves_earlier_is_cut_back_to_the_first_feedback(plugins: misstep.Plugins) -> None:
    blame_step_1 = ('Earliest error step: (1)\nError segment: "This equation can be written as"\n'
                    "Error reason: it is phrased badly.")
    verifier = llm(plugins, LLMVerifier, [GOOD_FEEDBACK, blame_step_1])
    rephrased = GOLD[0].__class__("1", 'We write it as "(A + B)", where A = (5 * 3 - 8) and B = (4 + 6 + 5).')
    improver = llm(plugins, LLMImprover, [render_steps(STILL_WRONG[1:]), render_steps([rephrased, *GOLD[1:]])])
    result = edit(reply(WRONG), improver=improver, verifier=verifier)
    assert (result.outcome, result.updates, result.worse) == ("cut", 2, True)
    assert result.attempts == [WRONG] and result.feedbacks == [STEP2_FEEDBACK]


def test_a_task_without_a_script_is_edited_by_the_llm(plugins: misstep.Plugins) -> None:
    """Date understanding: the LLM finds the error, the LLM improves, the right answer ends the loop."""
    task = misstep.Task(id="d1", question="Today is 3/5/2021. What is the date 10 days ago in MM/DD/YYYY?\nOptions:\n"
                        "(A) 02/23/2021\n(B) 02/25/2021", answer="A", dataset="date_understanding")
    attempt = ("Answer: Let's think step by step.\n(1) If today is 3/5/2021, then today's date is March 5, 2021.\n"
               "(2) 10 days before March 5, 2021 is February 25, 2021, that is 02/25/2021.\n"
               "(Final response) So the answer is (B).")
    feedback = ('Earliest error step: (2)\nError segment: "10 days before March 5, 2021 is February 25, 2021"\n'
                "Error reason: February 2021 has 28 days.")
    update = "(2) 10 days before March 5, 2021 is February 23, 2021.\n(Final response) So the answer is (A)."
    verifier, improver = llm(plugins, LLMVerifier, [feedback]), llm(plugins, LLMImprover, [update])
    with pytest.raises(misstep.ComponentError, match="no script"):
        ScriptedVerifier().critique([task], [parse_steps(attempt.split("\n", 1)[1])])
    result = edit_replies([task], [attempt], verifier.critique, improver.improve)[0]
    assert (result.outcome, result.updates, len(result.attempts)) == ("edited", 1, 2)
    assert result.feedbacks[0].text() == ('Step (1) is correct. In step (2) the part "10 days before March 5, 2021 is '
                                          'February 25, 2021" is incorrect. This is because February 2021 has 28 days.')
    assert result.feedbacks[1].correct
