"""Native tool calling in the agent loop: schemas to the model, calls back as tool_calls, results as tool
messages, bad calls as recorded action errors; end to end with the hf backend on a tiny model taught to call
tools, and with the openai backend against `transformers serve` on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import openai
import pytest
from agent_components import Add, Exact

import misstep
from misstep.agent import Agent, Rollout
from misstep.backends.hf import HFBackend
from misstep.backends.openai_compat import OpenAIBackend, ReplyMessage, parse_completion, reply_of
from misstep.builtin.parsers import HermesParser, JsonParser
from misstep.testing import served, teach
from misstep.training.encode import chat_messages

PROMPT = misstep.PromptTemplate(instruction="Add with the tool.", acknowledgement=None, question="{question}")
QUESTIONS = {"Apples: 2 and 3?": ("2,3", "5"), "Pens: 4 and 4?": ("4,4", "8"), "Cats: 7 and 5?": ("7,5", "12")}
ADD = Add.schema()


def call(arguments: str, call_id: str = "call_0") -> misstep.Message:
    return misstep.Message(role="assistant", tool_calls=[misstep.ToolCall(id=call_id, name="add",
                                                                          arguments={"input": arguments})])


def lessons() -> list[tuple[list[misstep.Message], misstep.Message | str]]:
    pairs: list[tuple[list[misstep.Message], misstep.Message | str]] = []
    for question, (arguments, total) in QUESTIONS.items():
        prompt = PROMPT.render(question)
        pairs.append((prompt, call(arguments)))
        pairs.append(([*prompt, call(arguments), misstep.Message(role="tool", content=total, tool_call_id="call_0",
                                                                name="add")], total))
    return pairs


@pytest.fixture(scope="module")
def caller(tiny_hermes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Hermes-template model taught to call `add` natively, then answer with the result."""
    folder = tmp_path_factory.mktemp("native") / "model"
    shutil.copytree(tiny_hermes, folder)
    return teach(folder, lessons(), tools=[ADD], steps=120, learning_rate=0.005)


def tasks() -> list[Rollout]:
    return [Rollout(misstep.Task(id=f"q{n}", question=q, answer=total))
            for n, (q, (_, total)) in enumerate(QUESTIONS.items())]


def native_agent(backend: misstep.Backend, **options) -> Agent:
    return Agent(backend, [Add()], Exact(), prompt=PROMPT, action_format="native", parser=HermesParser(),
                 max_new_tokens=48, **options)


def check_verified(trajectories: list[misstep.Trajectory]) -> None:
    assert len(trajectories) == 3
    for trajectory in trajectories:
        arguments, total = QUESTIONS[trajectory.messages[trajectory.prompt_len - 1].content]
        assert trajectory.label == "positive", trajectory.messages
        call_turn, result, answer = trajectory.messages[trajectory.prompt_len:]
        assert call_turn.tool_calls[0].name == "add" and call_turn.tool_calls[0].arguments == {"input": arguments}
        assert (result.role, result.content, result.tool_call_id) == ("tool", total, call_turn.tool_calls[0].id)
        assert answer.content == total and not answer.tool_calls
        assert trajectory.tools == [ADD] and trajectory.metadata["end"] == "finish"


def test_native_loop_end_to_end_with_the_hf_backend(caller: Path) -> None:
    backend = HFBackend(HFBackend.Options(model=misstep.ModelSpec(path=str(caller)), device="cpu"))
    try:
        trajectories = list(native_agent(backend).run(tasks()))
    finally:
        backend.close()
    check_verified(trajectories)
    assert trajectories[0].messages[2].tool_calls[0].id == "call_0"  # numbered by the agent: Hermes has no ids


@pytest.mark.slow
@pytest.mark.parametrize("calls_as", ["tool_calls", "text"])
def test_native_loop_end_to_end_with_the_openai_backend_and_transformers_serve(caller: Path, tmp_path: Path,
                                                                              calls_as: str) -> None:
    """`transformers serve` returns the calls as `tool_calls` when the tokenizer has a response template (as
    Qwen's has; the tiny hermes tokenizer too), else as text content, which the agent's parser reads. Either
    way the conversation goes back with tool_calls and tool messages, and the trajectories verify."""
    model = caller
    if calls_as == "text":
        model = tmp_path / "without-response-template"
        shutil.copytree(caller, model)
        config = json.loads((model / "tokenizer_config.json").read_text())
        del config["response_template"]
        (model / "tokenizer_config.json").write_text(json.dumps(config))
    with served(model, tmp_path / "serve.log") as url:
        client = openai.OpenAI(base_url=url, api_key="not-needed")
        first = client.chat.completions.create(
            model=str(model), messages=chat_messages(PROMPT.render("Apples: 2 and 3?")), tools=[ADD], max_tokens=48,
            temperature=0).choices[0].message
        assert bool(first.tool_calls) == (calls_as == "tool_calls")
        assert ("<tool_call>" in (first.content or "")) == (calls_as == "text")
        backend = OpenAIBackend(OpenAIBackend.Options(model=str(model), base_url=url, concurrency=3))
        trajectories = list(native_agent(backend).run(tasks()))
    check_verified(trajectories)
    if calls_as == "tool_calls":  # the server's call ids are kept
        assert all(t.messages[t.prompt_len].tool_calls[0].id.endswith("_tool_call_0") for t in trajectories)


class NativeScript(misstep.Backend):
    """Replies from a script, per turn, read with the agent's parser (a backend that writes calls as text)."""

    name = "native-script"

    class Options(misstep.Options):
        script: list[str]

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.seen_tools: list[list[misstep.ToolSchema]] = []

    def respond(self, conversations, sampling, tools, parser):
        self.seen_tools.append(list(tools))
        script = self.options.script
        return [parser.parse(script[min(sum(m.role == "assistant" for m in c), len(script) - 1)])
                for c in conversations]


class AngleParser(misstep.ToolCallParser):
    """Calls written as <call add>2,3</call>: a model family's own markup, added by a plugin."""

    name = "angle"

    def parse(self, text):
        match = re.search(r"<call (\w+)>(.*?)</call>", text)
        if match is None:
            return misstep.ParsedReply(content=text.strip())
        return misstep.ParsedReply(content=text[:match.start()].strip(),
                                   calls=(misstep.ParsedCall(match.group(1), {"input": match.group(2)}),))


class NativePlugin:
    @misstep.hookimpl
    def register_parsers(self, register):
        register(AngleParser)

    @misstep.hookimpl
    def register_backends(self, register):
        register(NativeScript)


def test_hook_register_parsers(plugins, write_recipe, tasks_file, tmp_path) -> None:
    plugins.add(NativePlugin(), "native-test")
    assert {"hermes", "json", "angle"} <= set(plugins.names("parser"))
    tasks = tasks_file([{"id": "q", "question": "Apples: 2 and 3?", "answer": "5"}])
    recipe = misstep.load_recipe(write_recipe(f"""
        name: native
        stages:
          - use: collect
            tasks: {{use: jsonl, path: {tasks}}}
            backend: {{use: native-script, script: ["<call add>2,3</call>", "5"]}}
            tools: [add]
            verifier: exact
            temperatures: [0.0]
            action_format: native
            tool_parser: angle
            prompt: {{instruction: "Add with the tool.", acknowledgement: null, question: "{{question}}"}}
        """), plugins=plugins)
    misstep.run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    [trajectory] = misstep.read_jsonl(tmp_path / "run" / "collect" / "trajectories.jsonl", misstep.Trajectory)
    assert trajectory.label == "positive" and trajectory.tools == [ADD]
    assert trajectory.messages[2].tool_calls[0] == misstep.ToolCall(id="call_0", name="add", arguments={"input": "2,3"})


def run_script(*script: str, parser: misstep.ToolCallParser | None = None, max_turns: int = 7) -> misstep.Trajectory:
    backend = NativeScript(NativeScript.Options(script=list(script)))
    agent = Agent(backend, [Add()], Exact(), prompt=PROMPT, action_format="native", parser=parser or HermesParser(),
                  max_turns=max_turns)
    [trajectory] = agent.run([Rollout(misstep.Task(id="t", question="Apples: 2 and 3?", answer="5"))])
    assert backend.seen_tools[0] == [ADD]
    return trajectory


CALL = '<tool_call>\n{"name": "add", "arguments": %s}\n</tool_call>'


def test_parallel_calls_each_get_a_tool_message() -> None:
    trajectory = run_script("Adding." + CALL % '{"input": "2,3"}' + CALL % '{"input": "1,1"}', "5")
    turn = trajectory.messages[2]
    assert turn.content == "Adding." and [c.id for c in turn.tool_calls] == ["call_0", "call_1"]
    assert [(m.tool_call_id, m.content) for m in trajectory.messages[3:5]] == [("call_0", "5"), ("call_1", "2")]
    assert trajectory.label == "positive" and trajectory.metadata["turns"] == 2


@pytest.mark.parametrize("reply, problem", [
    (CALL % '{"input": "2,3"', "a <tool_call> block cannot be read: not JSON"),
    (CALL.replace('"add"', '"multiply"') % '{"input": "2,3"}', "unknown tool 'multiply'; available: add"),
    (CALL % '{"numbers": [2, 3]}', "the arguments of 'add' do not fit its schema: 'input' is a required property"),
    (CALL % '{"input": 5}', "the arguments of 'add' do not fit its schema: input: 5 is not of type 'string'"),
    ("", "an empty reply: no answer and no tool call"),
])
def test_bad_calls_are_recorded_action_errors(reply: str, problem: str) -> None:
    trajectory = run_script(reply)
    assert trajectory.metadata["end"] == "action_error" and trajectory.metadata["action_errors"] == 1
    assert trajectory.metadata["action_error"].startswith(problem)
    assert trajectory.label == "negative" and trajectory.messages[-1].role == "assistant"


def test_turn_limit_and_bare_json_calls() -> None:
    trajectory = run_script('{"name": "add", "arguments": {"input": "1,1"}}', parser=JsonParser(), max_turns=2)
    assert trajectory.metadata["end"] == "max_turns" and len(trajectory.messages) == 6
    assert [m.tool_calls[0].id for m in trajectory.messages if m.tool_calls] == ["call_0", "call_1"]


@pytest.mark.parametrize("text, calls, content, error", [
    ('Sure. <tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>', [("f", {"x": 1})], "Sure.", None),
    ("The answer is 5.", [], "The answer is 5.", None),
    ('<tool_call>{"name": "f", "arguments": {"x": 1}}', [("f", {"x": 1})], "", None),  # cut at max tokens
    ('<tool_call>{"arguments": {}}</tool_call>', [], None, "a <tool_call> block cannot be read: expected"),
])
def test_hermes_parser(text, calls, content, error) -> None:
    reply = HermesParser().parse(text)
    assert [(c.name, c.arguments) for c in reply.calls] == calls
    assert (reply.error or "").startswith(error or "") and (error is None) == (reply.error is None)
    if content is not None:
        assert reply.content == content


@pytest.mark.parametrize("text, calls, error", [
    ('```json\n{"name": "f", "parameters": {"x": 1}}\n```', [("f", {"x": 1})], None),
    ('[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"y": "z"}}]', [("f", {}), ("g", {"y": "z"})], None),
    ('{"answer": 5}', [], None),
    ('{"name": "f", "arguments": {"x": 1}', [], "the call is not JSON"),
    ('{"name": "f", "arguments": [1]}', [], "a call cannot be read"),
])
def test_json_parser(text, calls, error) -> None:
    reply = JsonParser().parse(text)
    assert [(c.name, c.arguments) for c in reply.calls] == calls
    assert (reply.error or "").startswith(error or "") and (error is None) == (reply.error is None)


def completion(message: dict) -> ReplyMessage:
    """The message of a chat-completion reply body, read as the backend reads it."""
    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", **message}}]}).encode()
    return parse_completion(body).choices[0].message


def test_openai_replies_with_tool_calls_or_text() -> None:
    call = {"id": "srv_1", "type": "function", "function": {"name": "add", "arguments": json.dumps({"input": "2,3"})}}
    reply = reply_of(completion({"content": None, "tool_calls": [call]}), HermesParser(), misstep.Sampling())
    assert reply.calls == (misstep.ParsedCall(name="add", arguments={"input": "2,3"}, id="srv_1"),)
    call["function"]["arguments"] = "{input: 2"
    broken = reply_of(completion({"content": None, "tool_calls": [call]}), HermesParser(), misstep.Sampling())
    assert broken.error.startswith("the arguments of the call to 'add' are not JSON")
    text = completion({"content": CALL % '{"input": "2,3"}'})
    assert reply_of(text, HermesParser(), misstep.Sampling()).calls[0].arguments == {"input": "2,3"}


def test_backends_without_native_calling_say_so() -> None:
    class TextOnly(misstep.Backend):
        name = "text-only"

    with pytest.raises(misstep.ComponentError, match="`text-only` backend does not support native tool calling"):
        list(Agent(TextOnly(), [Add()], Exact(), action_format="native", parser=HermesParser()).run(tasks()[:1]))


def test_tool_schemas_default_to_one_string_argument() -> None:
    class Lookup(misstep.Tool):
        name = "lookup"
        description = "lookup[term], which returns the entry for the term."

    class Weather(misstep.Tool):
        """Today's weather in a city."""

        name = "weather"
        parameters = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}

    assert Lookup.schema()["function"] == {
        "name": "lookup", "description": "Returns the entry for the term.",
        "parameters": {"type": "object", "properties": {"term": {"type": "string"}}, "required": ["term"]}}
    assert Weather.schema()["function"]["description"] == "Today's weather in a city."
    assert Weather().argument({"city": "Paris", "days": 2}) == '{"city": "Paris", "days": 2}'
    assert Lookup().argument({"term": "x"}) == "x"


def test_native_stages_ask_in_native_words_unless_the_recipe_sets_a_prompt(plugins) -> None:
    collect = plugins.component("stage", "collect")
    native = collect.Options.model_validate({"tasks": "jsonl", "verifier": "exact", "action_format": "native"})
    assert native.prompt.instruction_text.startswith("Solve the task. Call the tools")
    assert native.prompt.render("q")[-1].content == "Question: q" and native.prompt.acknowledgement is None
    react = collect.Options.model_validate({"tasks": "jsonl", "verifier": "exact"})
    assert react.prompt.preset == "math"
    own = collect.Options.model_validate({"tasks": "jsonl", "verifier": "exact", "action_format": "native",
                                          "prompt": {"preset": "qa"}})
    assert own.prompt.preset == "qa"
