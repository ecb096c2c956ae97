"""The gsm8k-calls offline teacher: formulas composed from GSM8K's calculator annotations."""

from __future__ import annotations

import json
from pathlib import Path

import misstep
import pytest
from misstep_tools.calculator import Calculator
from misstep_trice.annotations import Gsm8kCalls, compose
from misstep_trice.answers import TriceMath
from misstep_trice.execution import execute
from misstep_trice.prompts import StudentPrompt, TeacherPrompt
from shared_data import SHARED_DATA

SHARED = SHARED_DATA / "gsm8k" / "train.jsonl"
NATALIA = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether "
           "in April and May.\n#### 72")
BETTY = ("In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's grandparents gave her 15 * 2 = "
         "$<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5")


@pytest.mark.parametrize(("solution", "formula"), [
    (NATALIA, "48+(48/2)"),
    (BETTY, "100-(100/2)-(15*2)-15"),
    ("12/60 = $<<12/60=0.2>>0.2 a minute; 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10", "(12/60)*50"),
    ("<<1,000*2=2,000>>2,000 and <<2000+5=2005>>\n#### 2005", "(1000*2)+5"),  # commas in numbers
    ("Three steps: <<2*3=6>>6, <<6+1=7>>7, <<7*6=42>>42", "((2*3)+1)*(2*3)"),  # a result used twice
    ("no annotation here\n#### 4", None),
])
def test_compose(solution: str, formula: str | None) -> None:
    assert compose(solution) == formula


def test_the_backend_answers_the_teacher_and_the_student_prompt(tasks_file) -> None:
    rows = [{"question": "Natalia sold clips ... altogether?", "answer": NATALIA},
            {"question": "How much does Betty need?", "answer": BETTY},
            {"question": "Plain?", "answer": "Nothing to compute.\n#### 3"}]
    teacher = Gsm8kCalls(Gsm8kCalls.Options(path=tasks_file(rows, "gsm8k.jsonl")))
    asked = [
        TeacherPrompt().render(misstep.Task(id="n", question=rows[0]["question"], answer="72")),  # shots before it
        StudentPrompt().render(rows[1]["question"]),
        StudentPrompt().render("Plain?"),
        StudentPrompt().render("A question it does not know?"),
    ]
    replies = teacher.generate(asked, [misstep.Sampling()] * len(asked))
    assert replies == ["calculator(48+(48/2))", "calculator(100-(100/2)-(15*2)-15)", "", ""]


def test_a_bad_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k.jsonl"
    path.write_text('{"question": "q", "answer": "<<1+1=2>>"}\n{"question": "q2"}\n')
    teacher = Gsm8kCalls(Gsm8kCalls.Options(path=path))
    with pytest.raises(misstep.DataError, match=r"gsm8k.jsonl:2: expected an object with 'question' and 'answer'"):
        teacher.generate([StudentPrompt().render("q")], [misstep.Sampling()])


@pytest.mark.skipif(not SHARED.is_file(), reason="the shared reference data is absent")
def test_most_gsm8k_training_questions_get_a_call_that_computes_the_gold() -> None:
    rows = [json.loads(line) for line in SHARED.read_text().splitlines()]
    tasks = [misstep.Task(id=str(i), question=row["question"], answer=row["answer"]) for i, row in enumerate(rows)]
    replies = Gsm8kCalls(Gsm8kCalls.Options(path=SHARED)).generate(
        [TeacherPrompt().render(task) for task in tasks], [misstep.Sampling()] * len(tasks))
    tools, verifier = {"calculator": Calculator()}, TriceMath()
    right = sum(bool(verifier.verify(task, execute(reply, tools).answer).correct)
                for task, reply in zip(tasks, replies) if reply)
    assert len(tasks) == 7473
    assert right / len(tasks) > 0.9  # 7,001 of 7,473 (93.7%) when this was written
