"""Multistep arithmetic (BIG-bench): expressions, the question generator and the scripted rationale.

A question nests binary operations over innermost groups of ``length`` numbers, ``depth`` levels deep
(``depth_levels`` [2] is depth 1, [2, 2] depth 2, ...): ``((7 - -1 + -1 + -4) - (-7 + 7 * 3 * -9)) =``.
The rationale names each innermost group with a letter, calculates each group one operation at a time,
then the equation over the letters::

    (1) This equation can be written as "(A - B)", where A = (7 - -1 + -1 + -4) and B = (-7 + 7 * 3 * -9).
    (2) Let's calculate A = (7 - -1 + -1 + -4) = (((7 - -1) + -1) + -4) = ((8 + -1) + -4) = (7 + -4) = 3.
    (3) Let's calculate B = ...
    (4) Then, the final equation is (A - B) = (3 - -196) = 199.
    (Final response) So the answer is 199.

Expressions are parsed here (integers, + - *, parentheses, letters); nothing is ever evaluated with
Python's ``eval``. Numbers are bounded so that a model's output cannot make a calculation explode.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from string import ascii_uppercase

from misstep_tripost.checking import Problem, wrong_id
from misstep_tripost.text import FINAL, Step

INFO = ("Recall that the order of operations in mathematics is as follows: (1) Parentheses, (2) exponents, "
        "(3) multiplication and division (from left to right), (4) addition and multiplication (from left to "
        "right). So, remember to always compute the expressions inside parentheses or brackets first.")
OPS = "+-*"
MAX_DIGITS = 60  # larger intermediate numbers are an invalid equation, not a slow one
_TOKEN = re.compile(r"\s*(\d+|[-+*()]|[A-Z])")


class ExpressionError(ValueError):
    """Text that is not an expression over integers, letters, + - * and parentheses."""


# --- expressions ---------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Tokens of ``text``; a minus sign before a number where an operand is expected makes it negative."""
    tokens: list[str] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"unexpected {text[position:].strip()[:10]!r}")
        token = match.group(1)
        position = match.end()
        operand_expected = not tokens or tokens[-1] in OPS or tokens[-1] == "("
        if token == "-" and operand_expected:
            number = _TOKEN.match(text, position)
            if number and number.group(1).isdigit() and number.start(1) == position:
                tokens.append("-" + number.group(1))
                position = number.end()
                continue
            raise ExpressionError("a minus sign must be followed directly by a number")
        tokens.append(token)
    return tokens


def render(tokens: list[str]) -> str:
    """Tokens joined the way the rationales write them: ``(a + -b)``."""
    text = " ".join(tokens)
    return text.replace("( ", "(").replace(" )", ")")


@dataclass
class Node:
    """A number, a letter, or a binary operation."""

    value: int | None = None
    letter: str | None = None
    op: str | None = None
    left: Node | None = None
    right: Node | None = None
    height: int = 0
    order: int = 0  # position of the operator in the text (left to right)

    def text(self) -> str:
        """Fully parenthesised: every operation in its own parentheses."""
        if self.op is None:
            return self.letter or str(self.value)
        assert self.left is not None and self.right is not None
        return f"({self.left.text()} {self.op} {self.right.text()})"

    def evaluate(self) -> int:
        if self.op is None:
            if self.value is None:
                raise ExpressionError(f"{self.letter} has no value")
            return self.value
        assert self.left is not None and self.right is not None
        left, right = self.left.evaluate(), self.right.evaluate()
        result = left + right if self.op == "+" else left - right if self.op == "-" else left * right
        if len(str(abs(result))) > MAX_DIGITS:
            raise ExpressionError("the numbers are too large")
        return result


@dataclass
class _Parser:
    tokens: list[str]
    position: int = 0
    operators: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        self.position += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            node = self.binary(node, self.take(), self.term)
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() == "*":
            node = self.binary(node, self.take(), self.factor)
        return node

    def binary(self, left: Node, op: str, operand: object) -> Node:
        order = self.operators
        self.operators += 1
        right = operand()  # type: ignore[operator]
        return Node(op=op, left=left, right=right, height=max(left.height, right.height) + 1, order=order)

    def factor(self) -> Node:
        token = self.take()
        if token == "(":
            node = self.expression()
            if self.take() != ")":
                raise ExpressionError("the brackets do not match")
            return node
        if token.lstrip("-").isdigit():
            if len(token) > MAX_DIGITS:
                raise ExpressionError("the numbers are too large")
            return Node(value=int(token))
        if token in ascii_uppercase:
            return Node(letter=token)
        raise ExpressionError(f"unexpected {token!r}")


def parse(text: str | list[str]) -> Node:
    """The expression tree of ``text`` (multiplication binds tighter; left to right)."""
    tokens = tokenize(text) if isinstance(text, str) else text
    parser = _Parser(tokens)
    node = parser.expression()
    if parser.peek() is not None:
        raise ExpressionError("the brackets do not match" if parser.peek() == ")" else "there is text after the expression")
    return node


def reductions(node: Node) -> list[str]:
    """The expression after each single operation, lowest operations first, then left to right."""
    operations: list[Node] = []

    def collect(n: Node) -> None:
        if n.op is not None:
            assert n.left is not None and n.right is not None
            collect(n.left)
            collect(n.right)
            operations.append(n)

    collect(node)
    texts = []
    for operation in sorted(operations, key=lambda n: (n.height, n.order)):
        operation.value = operation.evaluate()
        operation.op = operation.left = operation.right = None
        texts.append(node.text())
    return texts


def chain(expression: str) -> list[str]:
    """``expression``, its fully parenthesised form when that differs, then one operation at a time."""
    tree = parse(expression)
    full = tree.text()
    return [expression] + ([full] if full != expression else []) + reductions(tree)


def question_expression(question: str) -> str:
    """The expression of a question ``Q: (...) =`` (prefix and the trailing ``=`` removed)."""
    return question.strip().removeprefix("Q:").strip().removesuffix("=").strip()


# --- the question generator ---------------------------------------------------------------------------


def generate(rng: random.Random, length: int, depth: int) -> str:
    """A question with innermost groups of ``length`` numbers in -9..9, combined ``depth`` levels deep."""

    def group() -> str:
        parts = [str(rng.randint(-9, 9))]
        for _ in range(length - 1):
            parts += [rng.choice(OPS), str(rng.randint(-9, 9))]
        return "(" + " ".join(parts) + ")"

    def combine(level: int) -> str:
        if level == 0:
            return group()
        return f"({combine(level - 1)} {rng.choice(OPS)} {combine(level - 1)})"

    return combine(depth) + " ="


# --- the scripted rationale as a machine ---------------------------------------------------------------


def innermost_groups(tokens: list[str]) -> list[tuple[int, int]]:
    """``(start, end)`` token spans (inclusive brackets) of the groups that hold no other group."""
    spans, stack = [], []
    for index, token in enumerate(tokens):
        if token == "(":
            stack.append([index, True])
        elif token == ")" and stack:
            start, innermost = stack.pop()
            if innermost:
                spans.append((start, index))
            if stack:
                stack[-1][1] = False
    return sorted(spans)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d{1,60}", text) else None


@dataclass
class ArithmeticMachine:
    """Checks and writes the rationale of one multistep arithmetic question (see the module docstring)."""

    question: str
    tokens: list[str] = field(init=False)
    letters: dict[str, list[str]] = field(default_factory=dict)  # letter -> its group's tokens
    equation: list[str] = field(default_factory=list)  # the question with letters for groups
    values: dict[str, tuple[int, str]] = field(default_factory=dict)  # letter -> (value, step id)
    final: tuple[int, str] | None = None
    number: int = 1
    finished: bool = False

    def __post_init__(self) -> None:
        self.tokens = tokenize(question_expression(self.question))

    # writing

    def expect(self) -> Step | None:
        if self.finished:
            return None
        if not self.letters:
            spans = innermost_groups(self.tokens)
            letters = list(ascii_uppercase[: len(spans)])
            equation, cursor = [], 0
            for letter, (start, end) in zip(letters, spans):
                equation += self.tokens[cursor:start] + [letter]
                cursor = end + 1
            equation += self.tokens[cursor:]
            parts = [f"{letter} = {render(self.tokens[s:e + 1])}" for letter, (s, e) in zip(letters, spans)]
            return Step(str(self.number), f'This equation can be written as "{render(equation)}", where {_join(parts)}.')
        missing = [letter for letter in self.letters if letter not in self.values]
        if missing:
            letter = missing[0]
            steps = chain(render(self.letters[letter]))
            return Step(str(self.number), f"Let's calculate {letter} = {' = '.join(steps)}.")
        if self.final is None:
            substituted = render(self._substituted())
            steps = [render(self.equation)] + chain(substituted)
            return Step(str(self.number), f"Then, the final equation is {' = '.join(steps)}.")
        return Step(FINAL, f"So the answer is {self.final[0]}.")

    def _substituted(self) -> list[str]:
        return [str(self.values[t][0]) if t in self.values else t for t in self.equation]

    # checking

    def check(self, step: Step) -> Problem | None:
        if step.id == FINAL:
            return self._check_final(step)
        problem = wrong_id(step, str(self.number))
        if problem:
            return problem
        text = step.text.strip()
        if text.startswith("This equation can be written as"):
            problem = self._check_partition(text)
        elif text.startswith("Let's calculate"):
            problem = self._check_calculation(text, step.id)
        elif text.startswith("Then, the final equation is"):
            problem = self._check_equation(text, step.id)
        else:
            problem = Problem(text, "it is not a step of this calculation")
        if problem is None:
            self.number += 1
        return problem

    def _check_partition(self, text: str) -> Problem | None:
        if self.letters:
            return Problem(text, "the equation was already written with letters in step (1)")
        match = re.fullmatch(r'This equation can be written as "(.+)", where (.+?)\.?', text)
        if not match:
            return Problem(text, 'it should say: This equation can be written as "...", where A = (...) and B = (...)')
        definitions = {}
        for part in re.split(r",\s*(?:and\s+)?|\s+and\s+", match.group(2)):
            found = re.fullmatch(r"([A-Z]) = (.+)", part.strip())
            if not found or found.group(1) in definitions:
                return Problem(part.strip(), "each letter must be defined once, as in A = (...)")
            try:
                definitions[found.group(1)] = tokenize(found.group(2))
                if any(t in ascii_uppercase for t in definitions[found.group(1)]):
                    raise ExpressionError("a letter is defined with letters")
                parse(definitions[found.group(1)])
            except ExpressionError:
                return Problem(part.strip(), "it is an invalid equation")
        try:
            equation = tokenize(match.group(1))
            parse(equation)
        except ExpressionError:
            return Problem(match.group(1), "it is an invalid equation")
        expanded = [token for t in equation for token in (definitions.get(t, [t]))]
        used = [t for t in equation if t in ascii_uppercase]
        if expanded != self.tokens or sorted(used) != sorted(definitions):
            return Problem(text, f"it is not consistent with the original equation: {render(self.tokens)}")
        self.letters, self.equation = definitions, equation
        return None

    def _check_links(self, parts: list[str], start: int) -> Problem | None:
        """Every ``=`` from ``parts[start]`` on joins equal values; the last part is a number."""
        for left, right in zip(parts[start:], parts[start + 1:]):
            try:
                left_value = parse(left).evaluate()
            except ExpressionError as error:
                return Problem(left, f"it is an invalid equation ({error})")
            try:
                right_value = parse(right).evaluate()
            except ExpressionError as error:
                return Problem(right, f"it is an invalid equation ({error})")
            if left_value != right_value:
                return Problem(f"{left} = {right}", f"there is a calculation error, since {left} is not equal to {right}")
        if _number(parts[-1]) is None:
            return Problem(parts[-1], "the calculation is not finished: it should end with a single number")
        return None

    def _check_calculation(self, text: str, step_id: str) -> Problem | None:
        match = re.fullmatch(r"Let's calculate ([A-Z]) = (.+?)\.?", text)
        if not match:
            return Problem(text, "it should say: Let's calculate A = (...) = ... = <number>")
        letter, parts = match.group(1), [p.strip() for p in match.group(2).split("=")]
        if not self.letters:
            return Problem(text, "the equation has not been written with letters yet")
        if letter not in self.letters:
            return Problem(f"{letter} = {parts[0]}", f"{letter} is not defined in step (1)")
        if letter in self.values:
            return Problem(f"{letter} = {parts[0]}", f"{letter} was already calculated in step ({self.values[letter][1]})")
        try:
            same = tokenize(parts[0]) == self.letters[letter]
        except ExpressionError:
            same = False
        if not same:
            return Problem(f"{letter} = {parts[0]}", f"{letter} = {render(self.letters[letter])} according to step (1)")
        problem = self._check_links(parts, 0)
        if problem is None:
            self.values[letter] = (int(parts[-1]), step_id)
        return problem

    def _check_equation(self, text: str, step_id: str) -> Problem | None:
        match = re.fullmatch(r"Then, the final equation is (.+?)\.?", text)
        if not match:
            return Problem(text, "it should say: Then, the final equation is (A ... B) = ... = <number>")
        parts = [p.strip() for p in match.group(1).split("=")]
        if not self.letters:
            return Problem(text, "the equation has not been written with letters yet")
        if self.final is not None:
            return Problem(parts[0], f"the final equation was already calculated in step ({self.final[1]})")
        try:
            same = tokenize(parts[0]) == self.equation
        except ExpressionError:
            same = False
        if not same:
            return Problem(parts[0], f"this equation is inconsistent with step (1), where it is {render(self.equation)}")
        missing = [letter for letter in self.letters if letter not in self.values]
        if missing:
            return Problem(" = ".join(parts[:2]), f"{missing[0]} has not been calculated in previous steps")
        if len(parts) < 2:
            return Problem(parts[0], "the letters are not replaced by their values")
        expected = self._substituted()
        try:
            given = tokenize(parts[1])
        except ExpressionError:
            given = []
        if given != expected:
            wrong = [t for t, g in zip(self.equation, given) if t in self.values and g != str(self.values[t][0])]
            detail = (f": {wrong[0]} = {self.values[wrong[0]][0]} in step ({self.values[wrong[0]][1]})" if wrong
                      and len(given) == len(expected) else "")
            return Problem(f"{parts[0]} = {parts[1]}",
                           f"this substitution is inconsistent with the results in the previous steps{detail}")
        problem = self._check_links(parts, 1)
        if problem is None:
            self.final = (int(parts[-1]), step_id)
        return problem

    def _check_final(self, step: Step) -> Problem | None:
        text = step.text.strip()
        match = re.fullmatch(r"So the answer is (-?\d{1,60})\.?", text)
        if not match:
            return Problem(text, "it should say: So the answer is <number>.")
        missing = [letter for letter in self.letters if letter not in self.values]
        if not self.letters or missing:
            what = missing[0] if missing else "the equation"
            return Problem(f"the answer is {match.group(1)}.", f"{what} has not been calculated in previous steps")
        if self.final is None:
            return Problem(f"the answer is {match.group(1)}.", "the final equation has not been calculated")
        if int(match.group(1)) != self.final[0]:
            return Problem(f"the answer is {match.group(1)}.",
                           f"this answer is inconsistent with the result in step ({self.final[1]})")
        self.finished = True
        return None


def answer(steps: list[Step]) -> int | None:
    """The number the final response gives."""
    match = re.search(r"the answer is (-?\d{1,60})", steps[-1].text) if steps else None
    return int(match.group(1)) if match else None


def solve(question: str) -> int:
    return parse(question_expression(question)).evaluate()
