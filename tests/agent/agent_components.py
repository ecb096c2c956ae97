"""Small real components for the agent runtime tests: a scripted backend, an adder tool and an
exact-match verifier, registered through :class:`AgentTestPlugin`."""

from __future__ import annotations

import random

import misstep


class ScriptedBackend(misstep.Backend):
    """Replies from a script: ``replies[question][turn]`` (the last reply repeats); records batch sizes."""

    name = "scripted"

    class Options(misstep.Options):
        replies: dict[str, list[str]] = {}
        default: str = "Thought: no idea\nAction: finish[0]"

    calls: list[int] = []  # batch size of every generate call, shared by the instances of a test

    def generate(self, conversations, sampling):
        type(self).calls.append(len(conversations))
        out = []
        for conversation in conversations:
            question = next((m.content for m in conversation if m.content.startswith("Question: ")), "")
            script = self.options.replies.get(question.removeprefix("Question: "), [self.options.default])
            turn = sum(m.role == "assistant" for m in conversation) - 1  # minus the acknowledgement
            out.append(script[min(turn, len(script) - 1)])
        return out


class ChainAdder(misstep.Backend):
    """Adds the numbers of a question ``a+b+c...`` one per turn from the observations, then finishes; with
    ``slip`` > 0 a turn adds 1 too many with that chance (drawn from the sampling seed and the turn)."""

    name = "chain-adder"

    class Options(misstep.Options):
        slip: float = 0.0

    def generate(self, conversations, sampling):
        out = []
        for conversation, params in zip(conversations, sampling):
            question = next(m.content for m in conversation if m.content.startswith("Question: "))
            numbers = question.removeprefix("Question: ").split("+")
            results = [m.content.removeprefix("Observation: ") for m in conversation
                       if m.content.startswith("Observation: ")]
            slip = ", 1" if random.Random(f"{params.seed}|{len(results)}").random() < self.options.slip else ""
            if not results:
                out.append(f"Action: add[{numbers[0]}, {numbers[1]}{slip}]")
            elif len(results) < len(numbers) - 1:
                out.append(f"Action: add[{results[-1]}, {numbers[len(results) + 1]}{slip}]")
            else:
                out.append(f"Action: finish[{results[-1]}]")
        return out


class Add(misstep.Tool):
    """add[a, b, ...] -> the sum; bad input gives an "Error: ..." observation."""

    name = "add"

    def run(self, argument):
        try:
            return str(sum(int(part) for part in argument.split(",")))
        except ValueError:
            return f"Error: cannot add {argument!r}"


class Exact(misstep.Verifier):
    """Correct when the prediction equals the gold answer as text."""

    name = "exact"

    def verify(self, task, prediction, messages=()):
        correct = prediction is not None and prediction.strip() == str(task.answer)
        return misstep.Verdict(correct=correct, score=float(correct), prediction=prediction,
                               metrics={"em": float(correct)})


class Hint(misstep.Reformatter):
    """Positives with a hint appended to the question turn; inference asks with the same hint."""

    name = "hint"

    class Options(misstep.Options):
        text: str = " Solve it correctly."

    def reformat(self, trajectories, tasks):
        for t in trajectories:
            if t.label == "positive":
                yield misstep.Example(id=t.id, messages=[*self.inference_prompt(t.messages[: t.prompt_len]),
                                                         *t.messages[t.prompt_len :]])

    def inference_prompt(self, prompt):
        last = prompt[-1]
        return [*prompt[:-1], last.model_copy(update={"content": last.content + self.options.text})]


class Interrupter:
    """Counts trajectory_produced calls; raises ``error`` (KeyboardInterrupt) at call number ``after`` (if set)."""

    def __init__(self, after=None, error=KeyboardInterrupt):
        self.after = after
        self.error = error
        self.seen = []

    @misstep.hookimpl
    def trajectory_produced(self, trajectory, ctx):
        self.seen.append(trajectory.id)
        if len(self.seen) == self.after:
            raise self.error


class AgentTestPlugin:
    @misstep.hookimpl
    def register_backends(self, register):
        register(ScriptedBackend)
        register(ChainAdder)

    @misstep.hookimpl
    def register_tools(self, register):
        register(Add)

    @misstep.hookimpl
    def register_verifiers(self, register):
        register(Exact)

    @misstep.hookimpl
    def register_reformatters(self, register):
        register(Hint)
