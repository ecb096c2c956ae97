"""The action parser (misstep.actions): ReAct and TRICE call styles, and properties on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misstep.actions import Action, ActionError, find_call, parse_action

TOOLS = ("calculate", "search")


@pytest.mark.parametrize(("text", "tool", "argument", "style"), [
    ("Thought: add them\nAction: calculate[2 + 3]", "calculate", "2 + 3", "bracket"),
    ("Thought: add them\nAction: calculate(2 + 3)", "calculate", "2 + 3", "paren"),
    ("Thought: done\nAction: finish[5]", "finish", "5", "bracket"),
    ("Action: calculate[(2 + 3) * 4]", "calculate", "(2 + 3) * 4", "bracket"),
    ("Action: calculate[a[1] + [2]]", "calculate", "a[1] + [2]", "bracket"),  # nested brackets
    ("Action: calculate((2 + 3) * (4 - 1))", "calculate", "(2 + 3) * (4 - 1)", "paren"),
    ("Action: search[Genghis Khan]\nObservation: made up by the model", "search", "Genghis Khan", "bracket"),
    ("Thought: x\nAction: finish[Yes] and some trailing words", "finish", "Yes", "bracket"),
    ("Thought: x\n\nAction 2: Calculate [ 4 * 6 ]", "calculate", "4 * 6", "bracket"),  # case, number, spaces
    ("**Thought:** x\n**Action:** finish[1]", "finish", "1", "bracket"),  # markdown bold
    ("Action: finish[1]\nAction: calculate[2]", "finish", "1", "bracket"),  # the first action counts
])
def test_parses_calls(text: str, tool: str, argument: str, style: str) -> None:
    action = parse_action(text, TOOLS)
    assert isinstance(action, Action)
    assert (action.tool, action.argument, action.style) == (tool, argument, style)
    assert action.render() == (f"{tool}[{argument}]" if style == "bracket" else f"{tool}({argument})")


def test_thought_is_kept() -> None:
    action = parse_action("Thought: I add 2 and 3.\nAction: calculate[2 + 3]", TOOLS)
    assert isinstance(action, Action) and action.thought == "I add 2 and 3."


@pytest.mark.parametrize(("text", "message"), [
    ("Thought: I think the answer is 5.", "no 'Action:' in the response"),
    ("", "no 'Action:' in the response"),
    ("Action: ", "expected tool[argument] after 'Action:'"),
    ("Action: calculate 2 + 3", "expected '[' after the tool name 'calculate'"),
    ("Action: calculate[2 + 3", "has no closing ']'"),
    ("Action: wikipedia[Genghis Khan]", "unknown tool 'wikipedia'; available: calculate, finish, search"),
])
def test_action_errors(text: str, message: str) -> None:
    error = parse_action(text, TOOLS)
    assert isinstance(error, ActionError) and message in error.message


def test_find_call_trice_style() -> None:
    call = find_call("Let me compute: calculator(48+48/2) to be sure", ["calculator"])
    assert call is not None and (call.tool, call.argument, call.style) == ("calculator", "48+48/2", "paren")
    assert find_call("The answer is 72.", ["calculator"]) is None
    assert find_call("calculator(", ["calculator"]) is None
    assert find_call("anything", []) is None


NAMES = st.sampled_from([*TOOLS, "finish", "Finish", "unknown", "calc", ""])
ARGUMENTS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def turns(draw: st.DrawFn) -> str:
    """Text shaped like an assistant turn, with every part optional or broken."""
    opening, closing = draw(st.sampled_from([("[", "]"), ("(", ")"), ("[", ""), ("", ""), ("[", ")"), ("[[", "]")]))
    parts = [
        draw(st.sampled_from(["", "Thought: ", "thought 1: ", "Thought:"])) + draw(ARGUMENTS),
        draw(st.sampled_from(["\nAction: ", "\nAction 1:", "\naction :", " Action: ", "\n", "\nAction:\n"])),
        draw(NAMES) + draw(st.sampled_from(["", " "])) + opening + draw(ARGUMENTS) + closing,
        draw(ARGUMENTS),
    ]
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), turns()))
def test_parser_never_raises(text: str) -> None:
    result = parse_action(text, TOOLS)
    assert isinstance(result, (Action, ActionError))
    if isinstance(result, Action):
        assert result.tool in {*TOOLS, "finish"}
        assert result.argument == result.argument.strip()
    assert find_call(text, TOOLS) is None or find_call(text, TOOLS).tool in TOOLS


@settings(max_examples=200, deadline=None)
@given(tool=st.sampled_from([*TOOLS, "finish"]), style=st.sampled_from(["bracket", "paren"]),
       argument=st.text(alphabet=st.characters(blacklist_characters="[]()\r\n", blacklist_categories=("Cs",)),
                        max_size=30).map(str.strip),
       thought=st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                       max_size=30),
       trailing=st.text(max_size=30))
def test_well_formed_calls_round_trip(tool: str, style: str, argument: str, thought: str, trailing: str) -> None:
    call = Action(tool, argument, style=style).render()  # type: ignore[arg-type]
    action = parse_action(f"Thought: {thought}\nAction: {call}{trailing}", TOOLS)
    assert isinstance(action, Action)
    assert (action.tool, action.argument, action.style) == (tool, argument, style)
    assert action.thought == thought.strip()


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(min_value=1, max_value=30), style=st.sampled_from(["[]", "()"]))
def test_nested_brackets_of_any_depth(depth: int, style: str) -> None:
    inner = style[0] * depth + "1" + style[1] * depth
    action = parse_action(f"Action: calculate{style[0]}{inner}{style[1]} trailing", TOOLS)
    assert isinstance(action, Action) and action.argument == inner
