"""The ``openai`` backend against real HTTP servers: a small scripted one on 127.0.0.1 (for retries,
errors and concurrency) and, marked slow, ``transformers serve`` with the tiny model."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import misstep
import pytest
from misstep import load_recipe, read_jsonl, run_recipe
from misstep.backends.openai_compat import OpenAIBackend
from misstep.testing import served

from local_http import send

CONVERSATION = [misstep.Message(role="user", content="Question: 2+3?")]


class Endpoint:
    """A chat-completions server answering from a list of (status, text); the last entry repeats."""

    def __init__(self, answers, delay=0.0):
        self.answers = list(answers)
        self.delay = delay
        self.requests = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def handle(self, body):
        with self.lock:
            self.requests.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            status, text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        if status != 200:
            return status, {"error": {"message": text, "type": "test", "code": status}}
        return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}]}


@pytest.fixture
def serve(http_servers):
    def start(answers, delay=0.0):
        endpoint = Endpoint(answers, delay)

        def answer(handler):
            status, payload = endpoint.handle(json.loads(handler.rfile.read(int(handler.headers["Content-Length"]))))
            send(handler, status, json.dumps(payload).encode())

        return endpoint, http_servers.start(answer)

    return start


def backend(url, **options):
    return OpenAIBackend(OpenAIBackend.Options(model="m", base_url=url, backoff=0.01, **options))


def test_a_final_assistant_message_asks_for_its_continuation(serve):
    endpoint, url = serve([(200, " Step (1) is correct.")])
    prefilled = [*CONVERSATION, misstep.Message(role="assistant", content="Answer: 5\nFeedback:")]
    assert backend(url).generate([prefilled, CONVERSATION], [misstep.Sampling()] * 2) == [" Step (1) is correct."] * 2
    continued = next(r for r in endpoint.requests if len(r["messages"]) == 2)
    assert (continued["continue_final_message"], continued["add_generation_prompt"]) == (True, False)
    assert "continue_final_message" not in next(r for r in endpoint.requests if len(r["messages"]) == 1)


def test_requests_carry_each_conversations_sampling_and_replies_are_cut_at_the_stop(serve):
    endpoint, url = serve([(200, "Thought: t\nAction: finish[5]\nObservation: made up")])
    sampling = [misstep.Sampling(temperature=0.7, top_p=0.9, max_new_tokens=33, stop=("\nObservation:",), seed=4),
                misstep.Sampling()]
    replies = backend(url).generate([CONVERSATION, CONVERSATION], sampling)
    assert replies == ["Thought: t\nAction: finish[5]", "Thought: t\nAction: finish[5]\nObservation: made up"]
    first = next(r for r in endpoint.requests if r.get("seed") == 4)
    assert (first["temperature"], first["top_p"], first["max_tokens"], first["stop"]) == (0.7, 0.9, 33, ["\nObservation:"])
    assert first["messages"] == [{"role": "user", "content": "Question: 2+3?"}]


def test_429_and_5xx_are_retried_with_backoff(serve):
    endpoint, url = serve([(429, "slow down"), (503, "busy"), (200, "Action: finish[1]")])
    started = time.monotonic()
    assert backend(url, retries=2).generate([CONVERSATION], [misstep.Sampling()]) == ["Action: finish[1]"]
    assert len(endpoint.requests) == 3
    assert time.monotonic() - started >= 0.01 + 0.02  # two waits, the second twice the first


def test_retries_run_out_with_a_clear_error(serve):
    _, url = serve([(500, "broken")])
    with pytest.raises(misstep.ComponentError, match=r"answered HTTP 500 \(3 attempts\): broken"):
        backend(url, retries=2).generate([CONVERSATION], [misstep.Sampling()])


def test_other_client_errors_are_not_retried(serve):
    endpoint, url = serve([(404, "no such model")])
    with pytest.raises(misstep.ComponentError, match=r"HTTP 404 \(1 attempt\): no such model; check `model:`"):
        backend(url).generate([CONVERSATION], [misstep.Sampling()])
    assert len(endpoint.requests) == 1


def test_an_unreachable_endpoint_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(misstep.ComponentError, match=rf"cannot reach .*127.0.0.1:{port}/v1.*Start the server"):
        backend(f"http://127.0.0.1:{port}/v1", retries=1).generate([CONVERSATION], [misstep.Sampling()])


def test_concurrency_is_bounded(serve):
    endpoint, url = serve([(200, "Action: finish[1]")], delay=0.05)
    replies = backend(url, concurrency=3).generate([CONVERSATION] * 12, [misstep.Sampling()] * 12)
    assert len(replies) == 12 and endpoint.most_in_flight == 3


def test_generate_works_inside_a_running_event_loop(serve):
    _, url = serve([(200, "Action: finish[2]")])

    async def notebook_cell():  # e.g. Jupyter, where an event loop is already running
        return backend(url).generate([CONVERSATION], [misstep.Sampling()])

    assert asyncio.run(notebook_cell()) == ["Action: finish[2]"]


def test_a_timeout_is_an_error_after_the_retries(serve):
    _, url = serve([(200, "late")], delay=1.0)
    with pytest.raises(misstep.ComponentError, match=r"did not answer within 0.2s \(2 attempts\)"):
        backend(url, timeout=0.2, retries=1).generate([CONVERSATION], [misstep.Sampling()])


# --- a real `transformers serve` ----------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """``transformers serve`` on 127.0.0.1 with the tiny model, stopped at teardown."""
    if shutil.which("transformers") is None:
        pytest.skip("the `transformers` command is not installed (pip install 'misstep[serve]')")
    with served(tiny_model, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, str(tiny_model)


@pytest.mark.slow
def test_collect_through_a_real_transformers_server(transformers_server, tmp_path, tasks_file, write_recipe, plugins):
    url, model = transformers_server
    tasks = tasks_file([{"id": str(i), "question": f"{i}+1", "answer": i + 1} for i in range(3)])
    recipe = write_recipe(f"""
        name: served
        stages:
          - use: collect
            tasks: {{use: jsonl, path: {tasks}}}
            backend: {{use: openai, base_url: "{url}", model: "{model}", concurrency: 4}}
            tools: [add]
            verifier: exact
            temperatures: [0.0, 0.7]
            max_new_tokens: 16
        """)
    run = run_recipe(load_recipe(recipe, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    trajectories = list(read_jsonl(tmp_path / "run" / "collect" / "trajectories.jsonl", misstep.Trajectory))
    assert run.outputs["collect"]["count"] == len(trajectories) == 6
    assert all(t.verdict is not None and t.provenance.model == model for t in trajectories)
    assert all(t.messages[t.prompt_len].role == "assistant" for t in trajectories)


def test_several_replies_are_seeded_samples_and_beam_search_is_refused(serve):
    endpoint, url = serve([(200, "Action: finish[1]")])
    replies = backend(url).generate_n([CONVERSATION, CONVERSATION], [misstep.Sampling(temperature=0.7, seed=10)] * 2, 3)
    assert replies == [["Action: finish[1]"] * 3] * 2
    assert sorted(r["seed"] for r in endpoint.requests) == [10, 10, 11, 11, 12, 12]
    with pytest.raises(misstep.ComponentError, match="`openai` backend cannot beam search.*`hf` backend"):
        backend(url).generate_n([CONVERSATION], [misstep.Sampling(num_beams=4)], 2)
    with pytest.raises(misstep.ComponentError, match="cannot beam search"):
        backend(url).generate([CONVERSATION], [misstep.Sampling(num_beams=4)])
    assert len(endpoint.requests) == 6  # refused before any request
