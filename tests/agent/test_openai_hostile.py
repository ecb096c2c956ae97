"""The ``openai`` backend against a hostile server on 127.0.0.1: each case is one way a reply with status
200 can be unusable, or a way to hold a request (a byte at a time, an endless body). Each must be a failed
attempt, retried, then a clear error naming the endpoint and what came back; never a traceback or a hang."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import misstep
import pytest
from misstep.backends.openai_compat import OpenAIBackend

from local_http import Answer, send

CONVERSATION = [misstep.Message(role="user", content="Question: 2+3?")]
GOOD = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Action: finish[5]"}}]})


def body(data: bytes | str, content_type: str = "application/json") -> Answer:
    """A 200 reply with ``data`` as its whole body."""
    raw = data.encode() if isinstance(data, str) else data
    return lambda handler: send(handler, 200, raw, content_type)


def trickle(handler: BaseHTTPRequestHandler) -> None:
    """A 200 reply that announces 1000 bytes and sends one every 0.1 s (100 s in all)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(1000):
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.1)


def cut_off(handler: BaseHTTPRequestHandler) -> None:
    """A 200 reply that announces 1000 bytes and closes the connection after 13."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b'{"choices": [')
    handler.wfile.flush()
    handler.connection.close()


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A 200 reply whose body never ends (chunked, 64 KiB at a time)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"[" * 65536
    while True:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))


@pytest.fixture
def hostile(http_servers) -> Callable[..., tuple[list[int], str]]:
    """Start a server answering with the given replies in turn (the last repeats); gives (request log, URL)."""

    def start(*replies: Answer) -> tuple[list[int], str]:
        queue: list[Answer] = list(replies)
        requests: list[int] = []

        def answer(handler: BaseHTTPRequestHandler) -> None:
            handler.rfile.read(int(handler.headers["Content-Length"]))
            requests.append(1)
            (queue.pop(0) if len(queue) > 1 else queue[0])(handler)

        return requests, http_servers.start(answer)

    return start


def generate(url: str, **options) -> list[str]:
    options = {"retries": 2, "backoff": 0.01, **options}
    return OpenAIBackend(OpenAIBackend.Options(model="m", base_url=url, **options)).generate(
        [CONVERSATION], [misstep.Sampling()])


MALFORMED = {
    "invalid JSON": (body('{"choices": [{"message": '), "not JSON"),
    "empty body": (body(b""), "an empty body"),
    "HTML": (body("<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"), "not JSON"),
    "no choices": (body('{"choices": []}'), r"choices: List should have at least 1 item"),
    "null choices": (body('{"choices": null}'), r"choices: Input should be a valid list"),
    "no choices key": (body('{"error": {"message": "overloaded"}}'), r"choices: Field required"),
    "choice without message": (body('{"choices": [{"index": 0, "finish_reason": "stop"}]}'),
                               r"choices.0.message: Field required"),
    "null message": (body('{"choices": [{"message": null}]}'), r"choices.0.message: Input should be"),
    "number content": (body('{"choices": [{"message": {"role": "assistant", "content": 42}}]}'),
                       r"choices.0.message.content: Input should be a valid string"),
    "list content": (body('{"choices": [{"message": {"content": [{"type": "text", "text": "hi"}]}}]}'),
                     r"choices.0.message.content: Input should be a valid string"),
    "JSON list": (body("[1, 2, 3]"), r"the reply: Input should be a valid dictionary"),
    "JSON string": (body('"hello"'), r"the reply: Input should be a valid dictionary"),
    "not UTF-8": (body(b"\xff\xfe\x00garbage"), "not JSON"),
    "nested without end": (body("[" * 200_000), "not JSON"),
    "cut off": (cut_off, r"the body broke off after 13 bytes \(RemoteProtocolError: .*it began '\{\"choices\": \['"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_200_reply_is_retried_then_named(hostile, case) -> None:
    reply, problem = MALFORMED[case]
    requests, url = hostile(reply)
    with pytest.raises(misstep.ComponentError) as error:
        generate(url)
    message = str(error.value)
    assert message.startswith(f"the OpenAI-compatible endpoint {url} (model 'm') sent a reply misstep cannot use "
                              "(3 attempts)")
    assert len(requests) == 3
    assert re.search(problem, message), message
    assert "it began " in message and "ending in /v1" in message


def test_the_error_quotes_the_first_200_characters(hostile) -> None:
    page = "<html>" + "".join(f"{i:04d}" for i in range(500)) + "</html>"
    _, url = hostile(body(page, "text/html"))
    with pytest.raises(misstep.ComponentError) as error:
        generate(url, retries=0)
    assert f"it began {page[:200]!r}." in str(error.value) and page[:201] not in str(error.value)


def test_a_malformed_reply_then_a_good_one_succeeds(hostile) -> None:
    requests, url = hostile(body("<html>busy</html>", "text/html"), body('{"choices": null}'), body(GOOD))
    assert generate(url) == ["Action: finish[5]"]
    assert len(requests) == 3


HOLDING = {  # a reply that would hold a request: how it is cut, the options, the error, the most seconds
    "a byte at a time": (trickle, {"timeout": 1.0}, r"did not answer within 1s \(2 attempts\); raise `timeout:`", 4),
    "endless": (endless, {"max_reply_bytes": 100_000},
                r"cannot use \(2 attempts\): more than 100000 bytes \(raise `max_reply_bytes:`", 10),
}


@pytest.mark.parametrize("case", HOLDING)
def test_a_reply_that_would_hold_the_request_is_cut(hostile, case) -> None:
    reply, options, error, seconds = HOLDING[case]
    requests, url = hostile(reply)
    started = time.monotonic()
    with pytest.raises(misstep.ComponentError, match=error):
        generate(url, retries=1, **options)
    assert time.monotonic() - started < seconds  # two bounded attempts, not the 100 s a trickle would take
    assert len(requests) == 2


def test_a_reply_within_max_reply_bytes_is_read(hostile) -> None:
    _, url = hostile(body(GOOD))
    assert generate(url, max_reply_bytes=len(GOOD)) == ["Action: finish[5]"]
