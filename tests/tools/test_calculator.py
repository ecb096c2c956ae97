"""The calculator: NAT's and TRICE's output conventions, exact-then-numeric evaluation, a hostile-input
suite, and the hard deadline of its worker process."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest

import misstep
from misstep_tools.calculator import WORKER, Calculate, Calculator, Limits
from misstep_tools.expressions import calculate
from misstep_tools.worker import Worker


def pell(n: int) -> int:
    """(1 + sqrt(2))**n + (1 - sqrt(2))**n, an integer that SymPy cannot prove to be one."""
    a, b = 2, 2
    for _ in range(n):
        a, b = b, 2 * b + a
    return a


@pytest.fixture(scope="module")
def calculator() -> Iterator[Calculate]:
    tool = Calculate()
    assert tool.run("1") == "1"  # the worker is warm
    yield tool


def warm(tool: Calculate) -> None:
    """Wait until the worker answers (after a timeout it is restarting), so a timed call times the call only."""
    assert tool.run("1") == "1"


@pytest.mark.parametrize(("expression", "observation"), [
    ("2 + 3", "5"),
    ("48/2", "24"),
    ("4/6", "2/3"),  # exact rationals as fractions
    ("-4/6", "-2/3"),
    ("10/4 + 1", "7/2"),
    ("2**-3", "1/8"),
    ("sqrt(2)", "1.41421"),  # other numbers: 6 significant digits
    ("1/3 + 0.0", "0.333333"),
    ("2*pi", "6.28319"),
    ("e", "2.71828"),
    ("0.1 + 0.2", "0.3"),
    ("1.5 * 2", "3"),  # whole floats print as integers
    ("1.5 * 12345678", "18518517"),  # and keep every digit of the whole part
    ("1234.5678", "1234.57"),
    ("0.000123456", "0.000123456"),
    ("10.0**20 + 0.5", "1e+20"),
    ("sqrt(4)", "2"),
    ("sqrt(8)", "2.82843"),
    ("(2**0.5)**2", "2"),
    ("2^10", "1024"),  # ^ is a power, as SymPy reads it
    ("7 // 2", "3"),
    ("-7 % 3", "2"),
    ("abs(-3) + floor(2.5) + ceil(2.1)", "8"),
    ("round(2.567, 2)", "2.57"),
    ("round(2.5)", "2"),  # ties to even, as Python and SymPy round
    ("round(7/3, 2)", "2.33"),
    ("min(3, 1.5) + max(1, 2, 3)", "4.5"),
    ("log(8, 2)", "3"),
    ("ln(e)", "1"),
    ("log10(1000)", "3"),
    ("factorial(5)", "120"),
    ("  ( 30 + ( 2 / 3 ) ) ", "92/3"),
    ("9**900", str(9**900)),  # large integers are exact
    ("-1+2", "1"),
    # exact first, numeric at the end: no rounding residue, no lost digits
    ("sin(pi)", "0"),
    ("tan(pi)", "0"),
    ("cos(pi/3)", "1/2"),
    ("cos(pi*(10**999+1)/3)", "1/2"),
    ("sin(pi*10**999)", "0"),
    ("sqrt(2)*sqrt(2)", "2"),
    ("(10**600)**(1/3)", str(10**200)),
    ("floor((10**999+1)**(1/3))", str(10**333)),
    ("ceil(sqrt(10**999+7))", str(__import__("math").isqrt(10**999 + 7) + 1)),
    ("floor(pi*10**50)", "314159265358979323846264338327950288419716939937510"),
    ("floor((1+sqrt(2))**1000 + (1-sqrt(2))**1000)", str(pell(1000))),
    ("((1+sqrt(2))**1000 + (1-sqrt(2))**1000) % 7", str(pell(1000) % 7)),
    ("sin(pi/7)**2 + cos(pi/7)**2", "1"),
    # whole numbers written with a decimal point are whole
    ("factorial(5.0)", "120"),
    ("round(2.567, 2.0)", "2.57"),
    ("(-8.0)**2.0", "64"),
    ("7.5 % -2", "-0.5"),
    ("pi // 1", "3"),
])
def test_values_follow_nat_conventions(expression: str, observation: str) -> None:
    assert calculate(expression) == observation


@pytest.mark.parametrize(("expression", "message"), [
    ("1/0", "division by zero"),
    ("5 % 0", "division by zero"),
    ("0**-1", "division by zero"),
    ("sqrt(-1)", "not a real number"),
    ("(-8)**(1/3)", "not a real number"),
    ("log(0)", "not positive"),
    ("factorial(2.5)", "whole number"),
    ("round(2.5, 1.5)", "whole number"),
    ("5.0 % 0.0", "division by zero"),
    ("1 // 0.0", "division by zero"),
    ("0.0**-1", "division by zero"),
    ("1/(sin(pi/7)**2 + cos(pi/7)**2 - 1)", "division by zero"),  # zero, though SymPy cannot prove it
    ("tan(pi/2)", "infinite"),
    ("exp(-10000)", "too small"),
    ("factorial(-1)", "negative"),
    ("x + 1", "unknown name 'x'"),
    ("sqrt", "write sqrt(...)"),
    ("foo(1)", "unknown function 'foo'"),
    ("max()", "takes 1 to 20 arguments"),
    ("sqrt(1, 2)", "takes 1 argument"),
    ("round(2, ndigits=1)", "unexpected character '='"),
    ("1,000", "write 1000, not 1,000"),
    ("2(3)", "only named functions"),
    ("50%", "invalid syntax"),
    ("2 + 3 =", "unexpected character '='"),
    ("1 < 2", "unexpected character '<'"),
    ("not 1", "Not is not allowed"),
    ("1 if 2 else 3", "'if' is not allowed"),
    ("1 and 2", "'and'/'or' is not allowed"),
    ("True", "bool values are not allowed"),
    ("1j", "imaginary numbers are not allowed"),
    ("1e400", "too large"),
    ("exp(-100000)", "too small"),
])
def test_errors_are_observations(expression: str, message: str) -> None:
    observation = calculate(expression)
    assert observation.startswith("Error: ") and message in observation, observation


@pytest.mark.parametrize(("expression", "observation"), [
    ("12345.67*1", "12345.67"),  # TRICE's Python calculator keeps every digit; its evaluation rounds
    ("4/6", repr(4 / 6)),
    ("1/3 + 0.0", repr(1 / 3)),
    ("0.1 + 0.2", repr(0.1 + 0.2)),
    ("1.1 * 1.1", repr(1.1 * 1.1)),
    ("sqrt(2)", repr(2**0.5)),
    ("2*pi", "6.283185307179586"),
    ("10**20/3", repr(10**20 / 3)),
    ("48/2 + 48", "72"),
    ("sin(pi)", "0"),
    ("cos(pi/3)", "0.5"),
    ("9**900", str(9**900)),
    ("(10**400+1)/2", "5.0e+399"),
])
def test_full_precision_for_trice(expression: str, observation: str) -> None:
    assert calculate(expression, precision="full") == observation


def test_trice_evaluation_judges_full_precision_correct() -> None:
    from misstep_trice.answers import TriceMath
    from misstep_trice.execution import execute

    execution = execute("calculator(12345.67*1)", {"calculator": Calculator()})
    assert execution.answer == "12345.67"
    task = misstep.Task(id="t", question="q", answer="12345.67", dataset="gsm8k")
    assert TriceMath().verify(task, execution.answer).correct is True
    assert TriceMath().verify(task, calculate("12345.67*1")).correct is False  # NAT's 6 digits: 12345.7


HOSTILE = [
    # code injection: never evaluated, refused at the characters or the tree
    "__import__('os').system('touch /tmp/misstep-pwned')",
    "__import__(os)",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "(1).__class__",
    "lambda: 1",
    "(lambda x: x)(1)",
    "[x for x in range(10)]",
    "open('/etc/passwd').read()",
    "eval(1)",
    "exec(1)",
    "globals()",
    "getattr(1, real)",
    "sympify(1)",
    "Symbol(x)",
    "x.y",
    "a[0]",
    "*a",
    "{1: 2}",
    "f'{1}'",
    "import os",
    "1; 2",
    "(y := 1)",
    # huge computations: refused before they run
    "9**9**9**9",
    "9**9**9",
    "2**10**100",
    "10**10000",
    "(10**500)*(10**500)*(10**500)",
    "factorial(10**9)",
    "factorial(factorial(20))",
    "factorial(3000)",
    "exp(10**100)",
    "exp(exp(exp(10)))",
    "sqrt(10**100000)",
    "1.0000001**(10**12)",
    "sin(10**5000)",
    "round(1, 10**9)",
    "999999999999999999999999999999**999999999999999",
    "9" * 1001,
    # deep or big trees: refused by length, depth or size
    "(" * 5000 + "1" + ")" * 5000,
    "(" * 250 + "1" + ")" * 250,
    "-" * 900 + "1",
    "+".join(["1"] * 400),
    "sqrt(" * 60 + "2" + ")" * 60,
    # unicode digits and operators
    "١ + ٢",
    "２ + ３",
    "2 × 3",
    "6 ÷ 2",
    "2 − 1",
    "√4",
    "ｓｑｒｔ(4)",
    "π",
    "1\u00a0+ 1",
    # nothing or whitespace
    "",
    "   ",
    "\n",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_hostile_input_gives_an_error_quickly(calculator: Calculate, expression: str) -> None:
    warm(calculator)
    started = time.perf_counter()
    observation = calculator.run(expression)
    elapsed = time.perf_counter() - started
    assert observation.startswith("Error: "), observation[:200]
    assert len(observation) < 400
    assert elapsed < 2.0, f"{expression[:40]!r} took {elapsed:.2f} s"  # the 1 s deadline, with slack for busy CPUs


SLOW = [  # about 1 s of SymPy inside one operation on a quiet 2-core machine
    ("floor((" + "+".join(f"sin({k})" for k in range(1, 41)) + ")*10**3990)", 4000),
    ("floor((" + "+".join(f"log({k})" for k in range(2, 42)) + ")*10**3990)", 4000),
]
DEADLINE = 0.2


@pytest.mark.slow
@pytest.mark.parametrize(("expression", "max_digits"), SLOW)
def test_the_deadline_holds_on_the_worst_cases(expression: str, max_digits: int) -> None:
    tool = Calculate(Calculate.Options(max_digits=max_digits, timeout=DEADLINE))
    warm(tool)
    started = time.perf_counter()
    observation = tool.run(expression)
    elapsed = time.perf_counter() - started
    assert observation == f"Error: the calculation took longer than {DEADLINE:g} s"
    assert elapsed < DEADLINE + 1.0, f"answered after {elapsed:.2f} s"
    assert tool.run("6*7") == "42"


def test_the_deadline_is_hard() -> None:
    """A worker busy inside one long call (here Python's own 3**10**9, minutes) is killed at the deadline."""
    worker = Worker("builtins:pow")
    try:
        worker.start()
        busy = worker._process
        started = time.perf_counter()
        assert worker.call({"base": 3, "exp": 10**9}, timeout=DEADLINE) is None
        assert time.perf_counter() - started < DEADLINE + 1.0
        assert busy is not None and busy.wait(timeout=5) is not None and worker._process is not busy
        assert worker.call({"base": 6, "exp": 2}, timeout=5) == 36
    finally:
        worker.close()


FORMERLY_SLOW = [  # (expression, max_digits, observation): each took seconds to minutes before
    ("(10**990-1)**(2/3)", 1000, "1.0e+660"),  # SymPy factored the base (4 s; 90+ s at 4000 digits)
    ("(10**3990-1)**(2/3)", 4000, "1.0e+2660"),
    ("sqrt(10**3990-1)", 4000, "1.0e+1995"),
    ("exp(log(10**3999+1)/3)", 4000, "1.0e+1333"),  # exp(log(n)/3) became n**(1/3), factored
    ("log10(10**3350+97)", 4000, "3350"),  # SymPy tested the integer for primality
    ("abs(10**3999+37) // 10**3998", 4000, "10"),
    ("round((42**(2/7)/525.272**(1/5))**(5/11), 4)", 1000, "0.9194"),  # a Float in a radical: minutes
    ("round(((5/37)**(3/997)*(8/39)/13)**(8/997), 4)", 1000, "0.9672"),  # roots of degree 997: minutes
    ("exp(10**220 - 10**222)", 1000, "Error: exp() of -9.9e+221 is too small"),
    ("floor(((1+sqrt(2))**3000 + (1-sqrt(2))**3000) / 10**1145)", 4000, str(pell(3000) // 10**1145)),
]


@pytest.mark.parametrize(("expression", "max_digits", "observation"), FORMERLY_SLOW)
def test_former_worst_cases_answer_quickly(expression: str, max_digits: int, observation: str) -> None:
    tool = Calculate(Calculate.Options(max_digits=max_digits))
    warm(tool)
    started = time.perf_counter()
    assert tool.run(expression).startswith(observation)
    assert time.perf_counter() - started < 1.5


def test_a_dead_worker_is_replaced(calculator: Calculate) -> None:
    warm(calculator)
    assert WORKER._process is not None
    os.kill(WORKER._process.pid, signal.SIGKILL)
    WORKER._process.wait()
    assert calculator.run("6*7") == "42"


def test_the_worker_ignores_ctrl_c_and_limits_its_memory(calculator: Calculate) -> None:
    warm(calculator)
    assert WORKER._process is not None
    pid = WORKER._process.pid
    os.kill(pid, signal.SIGINT)  # a Ctrl-C is the parent's to handle
    assert calculator.run("6*7") == "42" and WORKER._process.pid == pid
    if sys.platform == "linux":
        limits = open(f"/proc/{pid}/limits").read()
        address_space = next(line for line in limits.splitlines() if line.startswith("Max address space"))
        assert address_space.split()[3] == str(WORKER.memory_mb * 1024 * 1024)


def test_limits_are_options() -> None:
    tight = Calculate(Calculate.Options(max_length=10, max_digits=5))
    assert tight.run("1 + 2 + 3 + 4") == "Error: the expression is longer than 10 characters"
    assert tight.run("10**6").startswith("Error: the power is too large")
    assert tight.run("99999") == "99999"
    assert tight.run("99999 + 1").startswith("Error: the result is too large (numbers are limited to 5 digits)")
    assert calculate("1+2+3", Limits(max_nodes=4)).startswith("Error: the expression has more than 4 parts")
    assert calculate("1+2+3", Limits(max_depth=1)).startswith("Error: the expression is nested deeper than 1")
    with pytest.raises(ValueError):
        Calculate.Options(max_digits=5000)  # Python cannot print integers that long


def test_timeout_is_checked_between_operations() -> None:
    assert calculate("1 + 1", Limits(timeout=1e-9)) == "Error: the calculation took longer than 1e-09 s"


def test_registered_under_both_names(tmp_path) -> None:
    plugins = misstep.get_plugins()
    assert plugins.component("tool", "calculate") is Calculate
    assert plugins.component("tool", "calculator") is Calculator
    assert plugins.create("tool", "calculator").run("6*7") == "42"
    assert plugins.create("tool", "calculator").run("4/6") == "0.6666666666666666"  # TRICE: full precision
    assert plugins.create("tool", "calculate").run("4/6") == "2/3"  # NAT
    assert Calculate(Calculate.Options(precision="full")).run("4/6") == "0.6666666666666666"
    assert Calculate.description.startswith("calculate[expression]")
    assert Calculator.description.startswith("calculator(expression)")
