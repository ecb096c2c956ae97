"""A calculator that is safe on model output: the expression is parsed with :mod:`ast` into an
allow-listed tree (numbers, ``+ - * / // % **``/``^``, unary signs, parentheses, a few functions and
constants) and evaluated node by node with SymPy numbers. Nothing is ever ``eval``-ed or ``sympify``-ed.

Every operation is bounded before it runs: the text's length, the tree's size and depth, the digits of
every intermediate number (a power or factorial that would exceed them is refused without computing it)
and the evaluation time. Output follows NAT: integers plain, exact rationals as fractions ("2/3"), other
numbers with 6 significant digits ("1.41421"; whole numbers keep all their digits), errors as "Error: ...".
"""

from __future__ import annotations

import ast
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import misstep
import mpmath
import sympy
from pydantic import Field

PRECISION = 30
"""Decimal digits of the floats that irrational results (sqrt(2), pi) are evaluated to."""
MAX_DIGITS = 4000
"""The most digits ``max_digits`` may allow: Python refuses to print integers longer than 4300 digits."""
LOG10_2 = math.log10(2)
_ALLOWED_CHARACTERS = re.compile(r"[0-9A-Za-z_+\-*/%^().,\s]*")
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_NOT_ALLOWED = {
    ast.Attribute: "attribute access",
    ast.Subscript: "indexing",
    ast.Tuple: "a comma outside a function call (write 1000, not 1,000)",
    ast.Compare: "comparison",
    ast.BoolOp: "'and'/'or'",
    ast.Lambda: "lambda",
    ast.IfExp: "'if'",
}


class CalculatorError(Exception):
    """Why an expression cannot be calculated; its text becomes the "Error: ..." observation."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one expression may cost."""

    max_length: int = 1000
    max_nodes: int = 300
    max_depth: int = 50
    max_digits: int = 1000
    timeout: float = 1.0


Number = Any  # a sympy Rational (Integer included) or Float: the only values the evaluator handles


def _log10(value: Number) -> float:
    """log10(|value|) of a non-zero number, for any size (no float overflow)."""
    if value.is_Rational:
        return math.log10(abs(value.p)) - math.log10(value.q)
    return float(mpmath.log10(abs(mpmath.mpf(value._mpf_))))


def _digits(value: Number) -> float:
    """About how many decimal digits it takes to write ``value`` exactly (Floats: its magnitude)."""
    if value == 0:
        return 0.0
    if value.is_Rational:
        return math.floor(max(math.log10(abs(value.p)), math.log10(value.q))) + 1
    _, _, exponent, bits = value._mpf_  # mpmath's (sign, mantissa, exponent, bit count)
    return abs(exponent + bits) * LOG10_2


def _integer(value: Number, what: str) -> int:
    if value.is_Integer:
        return int(value)
    if value.is_Float and value == sympy.floor(value) and _digits(value) < 16:
        return int(value)
    raise CalculatorError(f"{what} must be a whole number, not {format_number(value)}")


class Evaluator:
    """Evaluates a checked tree to a SymPy number, refusing anything that would exceed ``limits``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout
        self.functions: dict[str, tuple[int, int, Callable[..., Number]]] = {
            "sqrt": (1, 1, sympy.sqrt),
            "abs": (1, 1, sympy.Abs),
            "exp": (1, 1, self._exp),
            "log": (1, 2, self._log),
            "ln": (1, 1, self._log),
            "log10": (1, 1, lambda x: self._log(x, sympy.Integer(10))),
            "log2": (1, 1, lambda x: self._log(x, sympy.Integer(2))),
            "sin": (1, 1, sympy.sin),
            "cos": (1, 1, sympy.cos),
            "tan": (1, 1, sympy.tan),
            "floor": (1, 1, sympy.floor),
            "ceil": (1, 1, sympy.ceiling),
            "ceiling": (1, 1, sympy.ceiling),
            "round": (1, 2, self._round),
            "factorial": (1, 1, self._factorial),
            "min": (1, 20, sympy.Min),
            "max": (1, 20, sympy.Max),
        }

    # --- the tree -------------------------------------------------------------------------------

    def evaluate(self, node: ast.AST) -> Number:
        if time.monotonic() > self.deadline:
            raise CalculatorError(f"the calculation took longer than {self.limits.timeout:g} s")
        if isinstance(node, ast.Expression):
            return self.evaluate(node.body)
        if isinstance(node, ast.Constant):
            return self._constant(node.value)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return self.number(CONSTANTS[node.id])
            if node.id in self.functions:
                raise CalculatorError(f"{node.id} is a function: write {node.id}(...)")
            raise CalculatorError(f"unknown name {node.id!r}; {VOCABULARY}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = self.evaluate(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
            return self._binary(node.op, self.evaluate(node.left), self.evaluate(node.right))
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(f"{describe(node)} is not allowed; {VOCABULARY}")

    def _constant(self, value: object) -> Number:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            kind = "imaginary numbers" if isinstance(value, complex) else f"{type(value).__name__} values"
            raise CalculatorError(f"{kind} are not allowed; {VOCABULARY}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CalculatorError("the number is too large")
            return self.number(sympy.Float(repr(value)))
        return self.number(sympy.Integer(value))

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise CalculatorError(f"only named functions can be called; {VOCABULARY}")
        name = node.func.id
        if name not in self.functions:
            raise CalculatorError(f"unknown function {name!r}; {VOCABULARY}")
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise CalculatorError(f"{name}() takes plain arguments only")
        low, high, function = self.functions[name]
        if not low <= len(node.args) <= high:
            expected = str(low) if low == high else f"{low} to {high}"
            raise CalculatorError(f"{name}() takes {expected} argument{'s' if high > 1 else ''}, got {len(node.args)}")
        return self.number(function(*(self.evaluate(arg) for arg in node.args)))

    # --- operations, each bounded before it runs ------------------------------------------------

    def _binary(self, op: ast.operator, left: Number, right: Number) -> Number:
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise CalculatorError("division by zero")
        if isinstance(op, ast.Add):
            return self.number(left + right)
        if isinstance(op, ast.Sub):
            return self.number(left - right)
        if isinstance(op, ast.Mult):
            return self.number(left * right)
        if isinstance(op, ast.Div):
            return self.number(left / right)
        if isinstance(op, ast.FloorDiv):
            return self.number(sympy.floor(left / right))
        if isinstance(op, ast.Mod):
            return self.number(sympy.Mod(left, right))
        return self._power(left, right)

    def _power(self, base: Number, exponent: Number) -> Number:
        if base == 0 and exponent < 0:
            raise CalculatorError("division by zero (0 to a negative power)")
        if base not in (0, 1, -1) and exponent != 0:
            log_digits = _log10(exponent) + math.log10(abs(_log10(base)) or 1e-300)
            if log_digits > math.log10(self.limits.max_digits):
                raise CalculatorError(f"the power is too large (numbers are limited to {self.limits.max_digits} digits)")
        return self.number(base**exponent)

    def _factorial(self, value: Number) -> Number:
        n = _integer(value, "the argument of factorial()")
        if n < 0:
            raise CalculatorError("factorial() of a negative number")
        if n > 10**6 or math.lgamma(n + 1) / math.log(10) > self.limits.max_digits:
            raise CalculatorError(f"factorial({n}) is too large (numbers are limited to {self.limits.max_digits} digits)")
        return sympy.factorial(n)

    def _exp(self, value: Number) -> Number:
        if value > self.limits.max_digits * math.log(10):
            raise CalculatorError(f"exp() of {format_number(value)} is too large")
        return sympy.exp(value)

    def _log(self, value: Number, base: Number | None = None) -> Number:
        if value <= 0 or (base is not None and base <= 0):
            raise CalculatorError("the logarithm of a number that is not positive")
        if base == 1:
            raise CalculatorError("a logarithm to base 1")
        return sympy.log(value) if base is None else sympy.log(value, base)

    def _round(self, value: Number, digits: Number | None = None) -> Number:
        places = 0 if digits is None else _integer(digits, "the number of digits of round()")
        if abs(places) > 100:
            raise CalculatorError("round() takes at most 100 digits")
        exact = sympy.Rational(value)  # Float.round() keeps too few bits to print right; round the exact value
        rounded = round(Fraction(int(exact.p), int(exact.q)), places)  # ties to even, as Python and SymPy do
        if digits is None:
            return sympy.Integer(int(rounded))
        return sympy.Float(sympy.Rational(rounded.numerator, rounded.denominator), PRECISION)

    # --- values ---------------------------------------------------------------------------------

    def number(self, value: Any) -> Number:
        """``value`` as an exact rational or a Float, or an error for anything else (complex, infinite)."""
        if value in (sympy.zoo, sympy.oo, -sympy.oo):
            raise CalculatorError("the result is infinite")
        if value is sympy.nan:
            raise CalculatorError("the result is undefined")
        if not (value.is_Rational or value.is_Float):
            value = value.evalf(PRECISION)
            if not (value.is_Rational or value.is_Float):
                raise CalculatorError("the result is not a real number")
        if _digits(value) > self.limits.max_digits:
            size = "small" if value.is_Float and abs(value) < 1 else "large"
            raise CalculatorError(f"the result is too {size} (numbers are limited to {self.limits.max_digits} digits)")
        return value


CONSTANTS = {"pi": sympy.pi, "e": sympy.E, "E": sympy.E}
VOCABULARY = (
    "use numbers, + - * / // % ** (or ^), parentheses, pi, e and the functions "
    "sqrt abs exp log ln log10 log2 sin cos tan floor ceil round factorial min max"
)


def describe(node: ast.AST) -> str:
    """What a syntax node is, in words, for error messages."""
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return f"the operator {type(node.op).__name__}"
    return _NOT_ALLOWED.get(type(node), type(node).__name__)


def parse(text: str, limits: Limits) -> ast.Expression:
    """The expression's syntax tree, after checking its characters, length, size and depth."""
    if not text:
        raise CalculatorError("empty expression; write calculate[2 + 3]")
    if len(text) > limits.max_length:
        raise CalculatorError(f"the expression is longer than {limits.max_length} characters")
    if not _ALLOWED_CHARACTERS.fullmatch(text):
        bad = next(char for char in text if not _ALLOWED_CHARACTERS.fullmatch(char))
        raise CalculatorError(f"unexpected character {bad!r}; {VOCABULARY}")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as error:
        detail = "" if error.msg == "invalid syntax" else f" ({error.msg})"
        raise CalculatorError(f"invalid syntax{detail}") from None
    except (MemoryError, RecursionError, ValueError):
        raise CalculatorError("the expression is too complex") from None
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise CalculatorError(f"the expression has more than {limits.max_nodes} parts")
        if depth > limits.max_depth:
            raise CalculatorError(f"the expression is nested deeper than {limits.max_depth} levels")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def format_number(value: Number) -> str:
    """NAT's output: integers plain, rationals "p/q", floats with 6 significant digits (whole part kept)."""
    if value.is_Integer:
        return str(int(value))
    if value.is_Rational:
        return f"{value.p}/{value.q}"
    if _digits(value) > 300:
        return mpmath.nstr(mpmath.mpf(value._mpf_), 6)
    number = float(value)
    magnitude = abs(number)
    if number.is_integer() and magnitude < 1e15:
        return str(int(number))
    if 1 <= magnitude < 1e15:
        places = max(0, 6 - (int(math.log10(magnitude)) + 1))
        text = f"{number:.{places}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{number:.6g}"


def calculate(expression: str, limits: Limits = Limits()) -> str:
    """The observation for ``expression``: its value, or "Error: ..."; never raises."""
    try:
        return format_number(Evaluator(limits).evaluate(parse(expression.strip(), limits)))
    except CalculatorError as error:
        return f"Error: {error}"
    except (RecursionError, MemoryError):
        return "Error: the expression is too complex"
    except Exception as error:  # SymPy on an input the checks let through: still an observation
        return f"Error: cannot calculate this ({type(error).__name__})"


class Calculate(misstep.Tool["Calculate.Options"]):
    """calculate[expression]: SymPy arithmetic on a safely parsed expression (NAT's calculator)."""

    name = "calculate"
    description = "calculate[expression], which calculates the expression and returns the answer."

    class Options(misstep.Options):
        max_length: int = Field(default=Limits.max_length, gt=0, description="characters of an expression")
        max_nodes: int = Field(default=Limits.max_nodes, gt=0, description="parts (numbers, operators, calls)")
        max_depth: int = Field(default=Limits.max_depth, gt=0, description="nesting depth of the parts")
        max_digits: int = Field(default=Limits.max_digits, gt=0, le=MAX_DIGITS,
                                description="digits of any number, also midway")
        timeout: float = Field(default=Limits.timeout, gt=0, description="seconds, checked between operations")

    def run(self, argument: str) -> str:
        return calculate(argument, Limits(**self.options.model_dump()))


class Calculator(Calculate):
    """calculator(expression): the same calculator under the name TRICE's prompts use."""

    name = "calculator"
    description = "calculator(expression), which calculates the expression and returns the answer."
