"""The calculator: NAT's output conventions, its functions, and a hostile-input suite."""

from __future__ import annotations

import time

import pytest

import misstep
from misstep_tools.calculator import Calculate, Calculator, Limits, calculate


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
def test_hostile_input_gives_an_error_quickly(expression: str) -> None:
    started = time.perf_counter()
    observation = Calculate().run(expression)
    elapsed = time.perf_counter() - started
    assert observation.startswith("Error: "), observation[:200]
    assert len(observation) < 400
    assert elapsed < 1.0, f"{expression[:40]!r} took {elapsed:.2f} s"  # the safety bound, with slack for busy CPUs


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
    assert Calculate.description.startswith("calculate[expression]")
    assert Calculator.description.startswith("calculator(expression)")
