"""Few-shot prompts of the LLM verifier and the LLM improver (defaults; recipes may replace them).

Verifier examples end with three lines the verifier must write (``Earliest error step``, ``Error
segment``, ``Error reason``); improver examples end with the feedback and the ``Updated Answer``.
Examples are separated by blank lines. The multistep arithmetic and word sorting examples agree with the
scripted verifier (a test checks it).
"""

from __future__ import annotations

from misstep_tripost.arithmetic import INFO

VERIFIER_INSTRUCTION = (
    "Each answer below solves a question step by step. Find the earliest step that is incorrect, quote the "
    "incorrect part of it exactly, and explain why it is incorrect. Reply in the format of the examples, with "
    "the three lines \"Earliest error step\", \"Error segment\" and \"Error reason\" and nothing else."
)

IMPROVER_INSTRUCTION = (
    "Each answer below is followed by feedback on its earliest error. Write the updated answer: keep the "
    "steps before the error as they are, correct the step the feedback names, and finish the solution. "
    "Continue the updated answer of the last question from where it stops, in the format of the examples."
)

_ARITHMETIC_WRONG_STEP = f"""Q: ((-9 + -6 + 8 * 1) * (-9 - -1 * -6 - 6)) =
Answer: Let's think step by step. {INFO}
(1) This equation can be written as "(A * B)", where A = (-9 + -6 + 8 * 1) and B = (-9 - -1 * -6 - 6).
(2) Let's calculate A = (-9 + -6 + 8 * 1) = ((-9 + -6) + 8 * 1) = (-15 + 8 * 1) = -3.
(3) Let's calculate B = (-9 - -1 * -6 - 6) = ((-9 - (-1 * -6)) - 6) = ((-9 - 6) - 6) = (-15 - 6) = -21.
(4) Then, the final equation is (A * B) = (-3 * -21) = 63.
(Final response) So the answer is 63."""

_ARITHMETIC_WRONG_SUBSTITUTION = f"""Q: ((4 - 7 * -2) - (3 * -5 + 6)) =
Answer: Let's think step by step. {INFO}
(1) This equation can be written as "(A - B)", where A = (4 - 7 * -2) and B = (3 * -5 + 6).
(2) Let's calculate A = (4 - 7 * -2) = (4 - (7 * -2)) = (4 - -14) = 18.
(3) Let's calculate B = (3 * -5 + 6) = ((3 * -5) + 6) = (-15 + 6) = -9.
(4) Then, the final equation is (A - B) = (18 - 9) = 9.
(Final response) So the answer is 9."""

_SORTING_WRONG_LETTER = """Q: Sort the following words alphabetically:
List: dot barn delta damp
Answer: Let's think step by step.
(1) The first letter: "dot"="d" (4), "barn"="b" (2), "delta"="d" (4), "damp"="d" (4).
(2) We now have: (2) "barn" < (4) ["dot" ? "delta" ? "damp"].
(3) Now sort this subpart ["dot" ? "delta" ? "damp"] by looking at their second letters: "dot"="o" (15), "delta"="t" (20), "damp"="a" (1).
(3.1) We now have: (1) "damp" < (15) "dot" < (20) "delta".
(3.2) Hence, we have "damp" < "dot" < "delta".
(4) Hence, we have "barn" < "damp" < "dot" < "delta".
(Final response) So the answer is: barn damp dot delta."""

_SORTING_WRONG_ORDER = """Q: Sort the following words alphabetically:
List: oasis maple ocean
Answer: Let's think step by step.
(1) The first letter: "oasis"="o" (15), "maple"="m" (13), "ocean"="o" (15).
(2) We now have: (15) ["oasis" ? "ocean"] < (13) "maple".
(3) Now sort this subpart ["oasis" ? "ocean"] by looking at their second letters: "oasis"="a" (1), "ocean"="c" (3).
(3.1) We now have: (1) "oasis" < (3) "ocean".
(3.2) Hence, we have "oasis" < "ocean".
(4) Hence, we have "oasis" < "ocean" < "maple".
(Final response) So the answer is: oasis ocean maple."""

_DATE_LEAP = """Q: Today is 3/5/2021. What is the date 10 days ago in MM/DD/YYYY?
Options:
(A) 02/23/2021
(B) 02/25/2021
(C) 03/15/2021
(D) 02/24/2020
Answer: Let's think step by step.
(1) If today is 3/5/2021, then today's date is March 5, 2021.
(2) 10 days before March 5, 2021 is February 25, 2021, that is 02/25/2021.
(Final response) So the answer is (B)."""

_DATE_BIRTHDAY = """Q: Jane was born on the last day of February in 2001. Today is her 16-year-old birthday. What is the date yesterday in MM/DD/YYYY?
Options:
(A) 02/27/2017
(B) 02/28/2017
(C) 02/29/2017
(D) 02/27/2016
Answer: Let's think step by step.
(1) The last day of February in 2001 is February 29, 2001, so Jane was born on February 29, 2001.
(2) Her 16-year-old birthday is February 29, 2017, so today is 02/29/2017.
(3) Yesterday is February 28, 2017, that is 02/28/2017.
(Final response) So the answer is (B)."""

VERIFIER_EXAMPLES = {
    "multistep_arithmetic": "\n\n".join([
        _ARITHMETIC_WRONG_STEP + """
Earliest error step: (2)
Error segment: "(-15 + 8 * 1) = -3"
Error reason: there is a calculation error, since (-15 + 8 * 1) is not equal to -3.""",
        _ARITHMETIC_WRONG_SUBSTITUTION + """
Earliest error step: (4)
Error segment: "(A - B) = (18 - 9)"
Error reason: this substitution is inconsistent with the results in the previous steps: B = -9 in step (3).""",
    ]),
    "word_sorting": "\n\n".join([
        _SORTING_WRONG_LETTER + """
Earliest error step: (3)
Error segment: ""delta"="t" (20)"
Error reason: the second letter of "delta" is "e".""",
        _SORTING_WRONG_ORDER + """
Earliest error step: (2)
Error segment: "(15) ["oasis" ? "ocean"] < (13) "maple""
Error reason: the words are not sorted in ascending order.""",
    ]),
    "date_understanding": "\n\n".join([
        _DATE_LEAP + """
Earliest error step: (2)
Error segment: "10 days before March 5, 2021 is February 25, 2021"
Error reason: February 2021 has 28 days, so 10 days before March 5, 2021 is February 23, 2021.""",
        _DATE_BIRTHDAY + """
Earliest error step: (1)
Error segment: "The last day of February in 2001 is February 29, 2001"
Error reason: 2001 is not a leap year, so the last day of February in 2001 is February 28, 2001.""",
    ]),
}

IMPROVER_EXAMPLES = {
    "multistep_arithmetic": "\n\n".join([
        _ARITHMETIC_WRONG_STEP + f"""
Feedback: Step (1) is correct. In step (2) the part "(-15 + 8 * 1) = -3" is incorrect. This is because there is a calculation error, since (-15 + 8 * 1) is not equal to -3.
Updated Answer: Let's think step by step. {INFO}
(1) This equation can be written as "(A * B)", where A = (-9 + -6 + 8 * 1) and B = (-9 - -1 * -6 - 6).
(2) Let's calculate A = (-9 + -6 + 8 * 1) = ((-9 + -6) + (8 * 1)) = (-15 + (8 * 1)) = (-15 + 8) = -7.
(3) Let's calculate B = (-9 - -1 * -6 - 6) = ((-9 - (-1 * -6)) - 6) = ((-9 - 6) - 6) = (-15 - 6) = -21.
(4) Then, the final equation is (A * B) = (-7 * -21) = 147.
(Final response) So the answer is 147.""",
        _ARITHMETIC_WRONG_SUBSTITUTION + f"""
Feedback: Step (1) to step (3) are correct. In step (4) the part "(A - B) = (18 - 9)" is incorrect. This is because this substitution is inconsistent with the results in the previous steps: B = -9 in step (3).
Updated Answer: Let's think step by step. {INFO}
(1) This equation can be written as "(A - B)", where A = (4 - 7 * -2) and B = (3 * -5 + 6).
(2) Let's calculate A = (4 - 7 * -2) = (4 - (7 * -2)) = (4 - -14) = 18.
(3) Let's calculate B = (3 * -5 + 6) = ((3 * -5) + 6) = (-15 + 6) = -9.
(4) Then, the final equation is (A - B) = (18 - -9) = 27.
(Final response) So the answer is 27.""",
    ]),
    "word_sorting": "\n\n".join([
        _SORTING_WRONG_LETTER + """
Feedback: Step (1) to step (2) are correct. In step (3) the part ""delta"="t" (20)" is incorrect. This is because the second letter of "delta" is "e".
Updated Answer: Let's think step by step.
(1) The first letter: "dot"="d" (4), "barn"="b" (2), "delta"="d" (4), "damp"="d" (4).
(2) We now have: (2) "barn" < (4) ["dot" ? "delta" ? "damp"].
(3) Now sort this subpart ["dot" ? "delta" ? "damp"] by looking at their second letters: "dot"="o" (15), "delta"="e" (5), "damp"="a" (1).
(3.1) We now have: (1) "damp" < (5) "delta" < (15) "dot".
(3.2) Hence, we have "damp" < "delta" < "dot".
(4) Hence, we have "barn" < "damp" < "delta" < "dot".
(Final response) So the answer is: barn damp delta dot.""",
        _SORTING_WRONG_ORDER + """
Feedback: Step (1) is correct. In step (2) the part "(15) ["oasis" ? "ocean"] < (13) "maple"" is incorrect. This is because the words are not sorted in ascending order.
Updated Answer: Let's think step by step.
(1) The first letter: "oasis"="o" (15), "maple"="m" (13), "ocean"="o" (15).
(2) We now have: (13) "maple" < (15) ["oasis" ? "ocean"].
(3) Now sort this subpart ["oasis" ? "ocean"] by looking at their second letters: "oasis"="a" (1), "ocean"="c" (3).
(3.1) We now have: (1) "oasis" < (3) "ocean".
(3.2) Hence, we have "oasis" < "ocean".
(4) Hence, we have "maple" < "oasis" < "ocean".
(Final response) So the answer is: maple oasis ocean.""",
    ]),
    "date_understanding": "\n\n".join([
        _DATE_LEAP + """
Feedback: Step (1) is correct. In step (2) the part "10 days before March 5, 2021 is February 25, 2021" is incorrect. This is because February 2021 has 28 days, so 10 days before March 5, 2021 is February 23, 2021.
Updated Answer: Let's think step by step.
(1) If today is 3/5/2021, then today's date is March 5, 2021.
(2) February 2021 has 28 days, so 10 days before March 5, 2021 is February 23, 2021, that is 02/23/2021.
(Final response) So the answer is (A).""",
        _DATE_BIRTHDAY + """
Feedback: In step (1) the part "The last day of February in 2001 is February 29, 2001" is incorrect. This is because 2001 is not a leap year, so the last day of February in 2001 is February 28, 2001.
Updated Answer: Let's think step by step.
(1) 2001 is not a leap year, so the last day of February in 2001 is February 28, 2001, and Jane was born on February 28, 2001.
(2) Her 16-year-old birthday is February 28, 2017, so today is 02/28/2017.
(3) Yesterday is February 27, 2017, that is 02/27/2017.
(Final response) So the answer is (A).""",
    ]),
}
