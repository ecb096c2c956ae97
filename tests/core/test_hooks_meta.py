"""Meta-tests (as in datasette), generic over hookspecs.py so that a new hook is caught at once: every
hook is documented (in its docstring, and in docs/hooks.md with its exact signature) and has a
``test_hook_<name>`` test somewhere in tests/."""

import inspect
import re
from pathlib import Path

import pytest

from misstep import hookspecs
from misstep.plugins import REGISTRATION_HOOKS

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "misstep_spec"))


def signature(hook: str) -> str:
    """``name(arg: Type, ...) -> Return`` as written in hookspecs.py."""
    spec = inspect.signature(getattr(hookspecs, hook))
    arguments = ", ".join(f"{p.name}: {p.annotation}" for p in spec.parameters.values())
    return f"{hook}({arguments}) -> {spec.return_annotation}"


def test_the_hooks_are_found():
    assert set(REGISTRATION_HOOKS.values()) <= set(HOOKS)
    assert {"register_commands", "trajectory_produced", "before_stage", "after_stage"} <= set(HOOKS)
    assert signature("after_stage") == "after_stage(ctx: StageContext, outputs: dict[str, Any]) -> None"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docstring_says_when_each_argument_and_the_return(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert re.search(r"\bCalled\b", doc), f"{hook}: say when it is called"
    for argument in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f":param {argument}:" in doc, f"{hook}: document the argument {argument!r} (:param {argument}:)"
    assert ":return:" in doc, f"{hook}: say what its return value means (:return:)"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_signature_is_in_the_docs(hook):
    text = (ROOT / "docs" / "hooks.md").read_text()
    assert f"## `{signature(hook)}`" in text, f"docs/hooks.md needs a section titled ## `{signature(hook)}`"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    assert re.search(rf"^def test_hook_{hook}\(", tests, re.MULTILINE), f"write a test named test_hook_{hook}"
