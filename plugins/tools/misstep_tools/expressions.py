"""Safe arithmetic on model output, with SymPy: what the calculator tools (:mod:`misstep_tools.calculator`)
compute in their worker process.

The expression is parsed with :mod:`ast` into an allow-listed tree (numbers, ``+ - * / // % **``/``^``,
unary signs, parentheses, a few functions and constants) and evaluated node by node with SymPy. Nothing is
ever ``eval``-ed or ``sympify``-ed.

Values stay exact (``pi/3``, ``sqrt(2)``) until the result is printed, so ``sin(pi)`` is 0 and
``cos(pi*(10**999+1)/3)`` is 1/2; the result is then evaluated numerically to :data:`PRECISION` digits.
A decimal number in the input (``0.5``) is inexact, and so is every value computed from it (a SymPy Float).
Every operation is bounded before it runs: the text's length, the tree's size and depth, the digits of
every intermediate number (a power or factorial that would exceed them is refused without computing it).
SymPy is kept off its slow paths: powers, functions and logarithms of long integers (which it would factor
or test for primality) and roots of high degree are computed numerically, with every digit of the whole
part and PRECISION more (so ``floor`` and ``%`` stay right); ``floor``, ``ceil``, ``//``, ``%`` and ``round``
treat a value within 1e-25 of a whole number as that number. Only the time between operations is checked
here: the tools add a hard deadline.
"""

from __future__ import annotations

import ast
import math
import re
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import mpmath
import sympy

from misstep_tools.calculator import MAX_DIGITS, Limits, Precision

PRECISION = 30
"""Decimal digits to which a result that is not rational (sqrt(2), pi) is evaluated."""
FACTOR_DIGITS = 20
"""Longer integers are not handed to SymPy's rational powers (it would try to factor them)."""
MAX_ROOT = 12
"""Roots up to this degree stay exact (``2**(1/3)``); higher ones are computed numerically (SymPy can take
minutes to combine them)."""
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


Number = Any  # a real SymPy number: Rational (Integer included), Float, or an exact expression (pi/3)


def approximate(value: Number, digits: int = 15) -> Any:
    """``value`` as an mpmath float (a double's 53-bit mantissa, any exponent), rounded from an evaluation to
    ``digits`` significant digits; 0 when the evaluation finds no significant digit (terms that cancel)."""
    if value.is_Rational:
        return mpmath.mpf(mpmath.libmp.from_rational(int(value.p), int(value.q), 53, "n"))  # correctly rounded
    numeric = value.evalf(digits)
    if not numeric.is_Float:
        if numeric.is_Rational:
            return approximate(numeric)
        raise CalculatorError("the result is not a real number")
    if numeric._prec <= 1:  # an exact zero that SymPy cannot prove, like sin(1)**2 + cos(1)**2 - 1
        return mpmath.mpf(0)
    return mpmath.mpf(numeric._mpf_)


def _log10(value: Number) -> float:
    """log10(|value|) of a non-zero number, for any size (no float overflow)."""
    if value.is_Rational:
        return math.log10(abs(value.p)) - math.log10(value.q)
    return float(mpmath.log10(abs(approximate(value))))


def _digits(value: Number) -> float:
    """About how many decimal digits it takes to write ``value`` (exactly for rationals, else its magnitude)."""
    if value.is_Rational:
        return 0.0 if value.is_zero else math.floor(max(math.log10(abs(value.p)), math.log10(value.q))) + 1
    number = approximate(value)
    return 0.0 if not number else math.floor(abs(float(mpmath.log10(abs(number))))) + 1


def _holds_long(value: Number) -> bool:
    """Whether ``value`` holds a rational whose numerator or denominator has more than FACTOR_DIGITS digits."""
    return any(max(abs(r.p), r.q) >= 10**FACTOR_DIGITS for r in value.atoms(sympy.Rational))


def _settle_sign(value: Number) -> None:
    """Ask a long integer's sign directly, once: otherwise SymPy's assumption system may answer a later
    "is it negative?" by testing primality first (it tries the related facts in random order), which takes
    seconds per thousand digits. Functions and powers of long integers are evaluated numerically at once,
    since SymPy asks such questions about the integers it derives from them."""
    _ = value.is_extended_positive, value.is_extended_negative, value.is_zero


def whole(value: Number) -> int | None:
    """``value`` as an int when it is a whole number (``5`` and ``5.0``), else None."""
    if value.is_Integer:
        return int(value)
    if value.is_Float and _digits(value) < 20:
        exact = sympy.Rational(value)  # the Float's exact binary value
        return int(exact) if exact.is_Integer else None
    return None


def _integer(value: Number, what: str) -> int:
    number = whole(value)
    if number is None:
        raise CalculatorError(f"{what} must be a whole number, not {brief(value)}")
    return number


def brief(value: Number) -> str:
    """``value`` for an error message: as printed, or to 6 significant digits when that is long."""
    text = format_number(value)
    return text if len(text) <= 20 else mpmath.nstr(approximate(value), 6)


class Evaluator:
    """Evaluates a checked tree to a SymPy number, refusing anything that would exceed ``limits``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.timeout
        self.functions: dict[str, tuple[int, int, Callable[..., Number]]] = {
            "sqrt": (1, 1, lambda x: self._power(x, sympy.Rational(1, 2))),
            "abs": (1, 1, sympy.Abs),
            "exp": (1, 1, self._exp),
            "log": (1, 2, self._log),
            "ln": (1, 1, self._log),
            "log10": (1, 1, lambda x: self._log(x, sympy.Integer(10))),
            "log2": (1, 1, lambda x: self._log(x, sympy.Integer(2))),
            "sin": (1, 1, sympy.sin),
            "cos": (1, 1, sympy.cos),
            "tan": (1, 1, sympy.tan),
            "floor": (1, 1, lambda x: sympy.floor(self._exact(x))),
            "ceil": (1, 1, lambda x: sympy.ceiling(self._exact(x))),
            "ceiling": (1, 1, lambda x: sympy.ceiling(self._exact(x))),
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
        if isinstance(op, (ast.Div, ast.FloorDiv, ast.Mod)) and (right.is_zero or not approximate(right)):
            raise CalculatorError("division by zero")
        if isinstance(op, ast.Add):
            return self.number(left + right)
        if isinstance(op, ast.Sub):
            return self.number(left - right)
        if isinstance(op, ast.Mult):
            return self.number(left * right)
        if isinstance(op, ast.Div):
            return self.number(left / right)
        if isinstance(op, (ast.FloorDiv, ast.Mod)):
            left, right = self._exact(left), self._exact(right)
            quotient = sympy.floor(left / right)
            # Python's sign convention: the remainder has the divisor's sign
            return self.number(quotient if isinstance(op, ast.FloorDiv) else left - right * quotient)
        return self._power(left, right)

    def _power(self, base: Number, exponent: Number) -> Number:
        if base.is_zero:
            if approximate(exponent) < 0:
                raise CalculatorError("division by zero (0 to a negative power)")
            return self.number(base**exponent)
        if approximate(base) < 0 and whole(exponent) is None:
            raise CalculatorError("the result is not a real number")
        if approximate(exponent) != 0 and abs(approximate(base)) != 1:
            log_digits = _log10(exponent) + math.log10(abs(_log10(base)) or 1e-300)
            if log_digits > math.log10(self.limits.max_digits):
                raise CalculatorError(f"the power is too large (numbers are limited to {self.limits.max_digits} digits)")
        if exponent.is_Rational and not exponent.is_Integer and (exponent.q > MAX_ROOT or _holds_long(base)):
            return self.number(self._root(base, exponent))
        return self.number(base**exponent)

    def _root(self, base: Number, exponent: Number) -> Number:
        """``base**exponent`` for a fractional exponent and a positive base that SymPy would be slow on (one
        holding a long integer, which it would factor, or a root past MAX_ROOT): exact when the base is a
        perfect power, else a Float with every digit of the whole part and PRECISION more."""
        if base.is_Rational:
            numerator, exact_numerator = sympy.integer_nthroot(int(base.p), int(exponent.q))
            denominator, exact_denominator = sympy.integer_nthroot(int(base.q), int(exponent.q))
            if exact_numerator and exact_denominator:
                return sympy.Rational(numerator, denominator) ** exponent.p
        digits = abs(float(exponent) * _log10(base)) + PRECISION + 10
        return base.evalf(int(digits)) ** exponent

    def _exact(self, value: Number, places: int = 0) -> Number:
        """A Rational or Float for the operations that need every digit (floor, ceil, //, %, round): other
        values are evaluated to every digit of their whole part, ``places`` and PRECISION more; within
        10**-(PRECISION - 5) of a whole number, they are that number (SymPy cannot prove every identity)."""
        if value.is_Rational or value.is_Float:
            return value
        numeric = value.evalf(int(_digits(value)) + max(places, 0) + PRECISION)
        exact = sympy.Rational(numeric)
        nearest = sympy.Integer(round(Fraction(int(exact.p), int(exact.q))))
        return nearest if abs(exact - nearest) < sympy.Rational(1, 10 ** (PRECISION - 5)) else numeric

    def _factorial(self, value: Number) -> Number:
        n = _integer(value, "the argument of factorial()")
        if n < 0:
            raise CalculatorError("factorial() of a negative number")
        if n > 10**6 or math.lgamma(n + 1) / math.log(10) > self.limits.max_digits:
            raise CalculatorError(f"factorial({n}) is too large (numbers are limited to {self.limits.max_digits} digits)")
        return sympy.factorial(n)

    def _exp(self, value: Number) -> Number:
        exponent = approximate(value)
        if abs(exponent) > self.limits.max_digits * math.log(10):
            size = "large" if exponent > 0 else "small"
            raise CalculatorError(f"exp() of {brief(value)} is too {size} (numbers are limited to "
                                  f"{self.limits.max_digits} digits)")
        if _holds_long(value):  # SymPy turns exp(log(n)/3) into n**(1/3) and factors n
            return sympy.exp(value.evalf(int(abs(exponent) / math.log(10)) + PRECISION + 10))
        return sympy.exp(value)

    def _log(self, value: Number, base: Number | None = None) -> Number:
        if approximate(value) <= 0 or (base is not None and approximate(base) <= 0):
            raise CalculatorError("the logarithm of a number that is not positive")
        if base is not None and whole(base) == 1:
            raise CalculatorError("a logarithm to base 1")
        if _holds_long(value) or (base is not None and _holds_long(base)):  # SymPy would test it for primality
            value = value.evalf(PRECISION + 10)
            base = None if base is None else base.evalf(PRECISION + 10)
        return sympy.log(value) if base is None else sympy.log(value, base)

    def _round(self, value: Number, digits: Number | None = None) -> Number:
        places = 0 if digits is None else _integer(digits, "the number of digits of round()")
        if abs(places) > 100:
            raise CalculatorError("round() takes at most 100 digits")
        exact = sympy.Rational(self._exact(value, places))  # a Float's exact value: Float.round() keeps too few bits
        rounded = round(Fraction(int(exact.p), int(exact.q)), places)  # ties to even, as Python and SymPy do
        if digits is None:
            return sympy.Integer(int(rounded))
        return sympy.Float(sympy.Rational(rounded.numerator, rounded.denominator), PRECISION)

    # --- values ---------------------------------------------------------------------------------

    def number(self, value: Any) -> Number:
        """``value`` if it is a real number within the digit limit, else a CalculatorError."""
        if value.has(sympy.nan):
            raise CalculatorError("the result is undefined")
        if value.has(sympy.zoo, sympy.oo, -sympy.oo):
            raise CalculatorError("the result is infinite")
        if not value.is_number:
            raise CalculatorError("the result is not a number")
        digits = _digits(value)  # approximating also refuses complex values
        if digits > self.limits.max_digits:
            size = "small" if abs(approximate(value)) < 1 else "large"
            raise CalculatorError(f"the result is too {size} (numbers are limited to {self.limits.max_digits} digits)")
        if value.is_Integer and abs(value.p) >= 10**FACTOR_DIGITS:
            _settle_sign(value)
        elif not (value.is_Rational or value.is_Float) and (
            value.has(sympy.Float)  # inexact input, inexact result (SymPy is slow on Floats in radicals)
            or any(_holds_long(part) for part in value.atoms(sympy.Function, sympy.Pow))  # see _settle_sign
        ):
            value = value.evalf(int(digits) + PRECISION)
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


def format_number(value: Number, precision: Precision = "nat") -> str:
    """The printed result: integers plain; then NAT's "p/q" and 6 significant digits (whole part kept),
    or (``full``) a decimal at double precision as Python prints floats."""
    if value.is_Integer:
        return str(int(value))
    if value.is_Rational and precision == "nat":
        return f"{value.p}/{value.q}"
    number = approximate(value, PRECISION)
    magnitude = abs(number)
    if not 1e-300 < magnitude < 1e300:
        return "0" if not magnitude else mpmath.nstr(number, 6 if precision == "nat" else 15)
    if float(number).is_integer() and magnitude < 1e15:
        return str(int(number))
    if precision == "full":
        return repr(float(number))
    if 1 <= magnitude < 1e15:
        places = max(0, 6 - (int(math.log10(magnitude)) + 1))
        text = f"{float(number):.{places}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{float(number):.6g}"


def calculate(expression: str, limits: Limits = Limits(), precision: Precision = "nat") -> str:
    """The observation for ``expression``, computed in this process: its value, or "Error: ..."; never raises.

    Only the time between operations is checked here; :class:`misstep_tools.calculator.Calculate` adds a
    hard deadline."""
    try:
        return format_number(Evaluator(limits).evaluate(parse(expression.strip(), limits)), precision)
    except CalculatorError as error:
        return f"Error: {error}"
    except (RecursionError, MemoryError):
        return "Error: the expression is too complex"
    except Exception as error:  # SymPy on an input the checks let through: still an observation
        return f"Error: cannot calculate this ({type(error).__name__})"


def calculate_request(expression: str, limits: dict[str, Any], precision: Precision) -> str:
    """:func:`calculate` for a worker request (JSON arguments)."""
    return calculate(expression, Limits(**limits), precision)
