"""The calculator's worst cases: seconds spent in-process (no deadline) versus through the tool (warm worker,
hard deadline). Prints a markdown table::

    python benchmarks/calculator_deadline.py                    # both columns, this checkout
    python benchmarks/calculator_deadline.py --in-process-only  # only calculate(): also runs on older code

Each in-process measurement runs in a fresh Python process, stopped after ``--cap`` seconds (shown as ">cap").
The cases are the slowest ones found by hand and by random expressions from the calculator's grammar
(big integers, radicals, trig, exp/log, floor, min/max), at the default ``max_digits`` (1000) and at the
largest allowed (4000).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

PELL = "((1+sqrt(2))**3000 + (1-sqrt(2))**3000)"
CASES: list[tuple[str, int]] = [
    ("(10**990-1)**(2/3)", 1000),  # SymPy factors rational powers of integers
    ("(10**3990-1)**(2/3)", 4000),
    ("sqrt(10**3990-1)", 4000),
    ("(2**13200-1)**(1/3)", 4000),
    ("exp(log(10**3999+1)/3)", 4000),  # exp(log(n)/3) becomes n**(1/3)
    ("log10(10**3350+97)", 4000),  # assumption queries test primality
    ("round((42**(2/7)/525.272**(1/5))**(5/11), 4)", 1000),  # a Float inside radicals
    ("round(((5/37)**(3/997)*(8/39)/13)**(8/997), 4)", 1000),  # roots of degree 997
    ("exp(10**220 - 10**222)", 1000),
    (f"{PELL} % 7", 4000),  # an integer SymPy cannot prove to be one
    ("max(" + ", ".join(f"sqrt({a})+sqrt({b}), sqrt({a + b}+2*sqrt({a * b}))"
                        for a, b in [(2, 3), (3, 5), (5, 7), (7, 11), (11, 13)]) + ")", 1000),  # equal, unprovably
    ("floor((" + "+".join(f"sin({k})" for k in range(1, 41)) + ")*10**3990)", 4000),  # 4000-digit numerics
    ("floor((" + "+".join(f"log({k})" for k in range(2, 42)) + ")*10**3990)", 4000),
]


def in_process(expression: str, max_digits: int, cap: float) -> tuple[str, str]:
    """(seconds, observation) of ``calculate`` in a fresh process with no deadline, or (">cap", "")."""
    code = ("import sys, time\nfrom misstep_tools.calculator import Limits\nfrom misstep_tools.expressions import calculate\n"
            "expression, digits = sys.argv[1], int(sys.argv[2])\nstarted = time.perf_counter()\n"
            "observation = calculate(expression, Limits(max_digits=digits, timeout=1e9))\n"
            "print(f'{time.perf_counter() - started:.2f}'); print(observation[:40])")
    try:
        result = subprocess.run([sys.executable, "-c", code, expression, str(max_digits)], capture_output=True,
                                text=True, timeout=cap, check=True)
    except subprocess.TimeoutExpired:
        return f">{cap:g}", ""
    seconds, observation = (result.stdout.splitlines() + ["", ""])[:2]
    return seconds, observation


def through_tool(expression: str, max_digits: int) -> tuple[str, str]:
    """(seconds, observation) of one call of the ``calculate`` tool, its worker warm."""
    from misstep_tools.calculator import Calculate

    tool = Calculate(Calculate.Options(max_digits=max_digits))
    assert tool.run("1") == "1"  # warm (after a timeout the worker restarts)
    started = time.perf_counter()
    observation = tool.run(expression)
    return f"{time.perf_counter() - started:.2f}", observation[:40]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds before an in-process run is stopped")
    parser.add_argument("--in-process-only", action="store_true", help="skip the tool (for older checkouts)")
    args = parser.parse_args()
    header = "| expression | max_digits | in-process s | result |"
    rule = "| --- | ---: | ---: | --- |"
    if not args.in_process_only:
        header += " tool s | tool observation |"
        rule += " ---: | --- |"
    print(header)
    print(rule)
    for expression, max_digits in CASES:
        shown = expression if len(expression) <= 50 else expression[:47] + "..."
        seconds, observation = in_process(expression, max_digits, args.cap)
        row = f"| `{shown}` | {max_digits} | {seconds} | {observation} |"
        if not args.in_process_only:
            row += " {} | {} |".format(*through_tool(expression, max_digits))
        print(row, flush=True)


if __name__ == "__main__":
    main()
