"""The ``openai`` backend: any OpenAI-compatible chat endpoint (OpenAI, vLLM, ``transformers serve``).

Requests run concurrently on an ``AsyncOpenAI`` client, at most ``concurrency`` at a time. Each has a
total deadline (``timeout``, from sending to the reply's last byte) and a reply size cap
(``max_reply_bytes``). 429 / 5xx / connection failures, timeouts and replies that are not a chat
completion (not JSON, empty, no choices, no message, non-text content) are failed attempts, retried with
exponential backoff; when the retries run out, :class:`~misstep.errors.ComponentError` names the
endpoint and what it sent.
A conversation that ends with an assistant message asks for its continuation (vLLM's
``continue_final_message``). Native tool calling sends the tools' schemas as ``tools=`` and reads the
reply's ``tool_calls``; a server that returns a call as text content instead (``transformers serve``
for a model without a response template) has it read with the agent's tool-call parser.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from misstep.backends import cut_at_stop
from misstep.components import Backend, Options, ParsedCall, ParsedReply, Sampling, ToolCallParser
from misstep.datamodel import Message, ToolSchema
from misstep.errors import ComponentError
from misstep.training.encode import chat_messages

T = TypeVar("T")
MAX_API_STOPS = 4  # the OpenAI API accepts at most four stop sequences
SHOWN = 200  # characters of an unusable reply quoted in the error


class ReplyFunction(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str | dict[str, Any] = ""


class ReplyToolCall(BaseModel):
    """A native tool call in a reply (its arguments are checked by :func:`reply_of`, as the model's output)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    function: ReplyFunction


class ReplyMessage(BaseModel):
    """The assistant message of a chat-completion choice (other fields are kept, unchecked)."""

    model_config = ConfigDict(extra="allow")

    content: str | None = None
    tool_calls: list[ReplyToolCall] | None = None


class ReplyChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    message: ReplyMessage


class Completion(BaseModel):
    """What misstep needs of a chat-completion reply: at least one choice with a message."""

    model_config = ConfigDict(extra="allow")

    choices: list[ReplyChoice] = Field(min_length=1)


class BadReply(Exception):
    """A 2xx reply that is not a usable chat completion: what is wrong and the start of the body."""

    def __init__(self, problem: str, body: bytes) -> None:
        super().__init__(problem)
        self.problem = problem
        self.body = body


def parse_completion(body: bytes) -> Completion:
    """The chat completion in a reply body; :class:`BadReply` says why the body is not one."""
    if not body.strip():
        raise BadReply("an empty body", body)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8 text, or nested without end
        raise BadReply("not JSON", body) from None
    try:
        return Completion.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the reply"
        raise BadReply(f"not a chat completion ({where}: {problem['msg']})", body) from None


class OpenAIBackend(Backend["OpenAIBackend.Options"]):
    """Chat completions from an OpenAI-compatible endpoint, with bounded concurrency and retries."""

    name = "openai"

    class Options(Options):
        model: str = Field(description="model name the endpoint serves")
        base_url: str = Field(default="https://api.openai.com/v1", description="endpoint, ending in /v1")
        api_key_env: str = Field(default="OPENAI_API_KEY", description="environment variable holding the key")
        concurrency: int = Field(default=16, gt=0, description="requests in flight at once")
        timeout: float = Field(default=120.0, gt=0, description="seconds per request, from sending it to the "
                               "reply's last byte")
        max_reply_bytes: int = Field(default=10_000_000, gt=0, description="a longer reply is a failed attempt")
        retries: int = Field(default=4, ge=0, description="retries of a request after 429, 5xx, no connection, a "
                             "timeout or a reply that is not a chat completion")
        backoff: float = Field(default=1.0, ge=0, description="first retry delay in seconds, doubled each time")

    @property
    def model_name(self) -> str:
        return self.options.model

    def generate(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling]) -> list[str]:
        return self._all(conversations, sampling, (), lambda message, params: cut_at_stop(message.content or "",
                                                                                             params.stop))

    def respond(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
                tools: Sequence[ToolSchema], parser: ToolCallParser[Any]) -> list[ParsedReply]:
        return self._all(conversations, sampling, tools, lambda message, params: reply_of(message, parser, params))

    def _all(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
             tools: Sequence[ToolSchema], read: Callable[[ReplyMessage, Sampling], T]) -> list[T]:
        """One request per conversation; ``read`` turns each reply message into the result."""
        if len(conversations) != len(sampling):
            raise ComponentError(f"{len(conversations)} conversations but {len(sampling)} sampling settings")
        self.refuse_beam_search(sampling)
        if not conversations:
            return []
        return _run(self._generate_all(conversations, sampling, tools, read))

    async def _generate_all(self, conversations: Sequence[Sequence[Message]], sampling: Sequence[Sampling],
                            tools: Sequence[ToolSchema], read: Callable[[ReplyMessage, Sampling], T]) -> list[T]:
        import openai

        opts = self.options
        client = openai.AsyncOpenAI(
            base_url=opts.base_url,
            api_key=os.environ.get(opts.api_key_env) or "not-needed",
            timeout=opts.timeout,
            max_retries=0,  # retries are ours, so their number and backoff are the options above
        )
        limit = asyncio.Semaphore(opts.concurrency)
        try:
            return list(await asyncio.gather(*(
                self._one(client, limit, messages, params, tools, read)
                for messages, params in zip(conversations, sampling)
            )))
        finally:
            await client.close()

    async def _one(self, client: Any, limit: asyncio.Semaphore, messages: Sequence[Message], params: Sampling,
                   tools: Sequence[ToolSchema], read: Callable[[ReplyMessage, Sampling], T]) -> T:
        import openai

        request: dict[str, Any] = {
            "model": self.options.model,
            "messages": chat_messages(messages, arguments_as_text=True),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.stop:
            request["stop"] = list(params.stop[:MAX_API_STOPS])
        if params.seed is not None:
            request["seed"] = params.seed
        if tools:
            request["tools"] = list(tools)
        if messages and messages[-1].role == "assistant":  # continue it (vLLM's parameters for a prefill)
            request["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        delay = self.options.backoff
        for attempt in range(self.options.retries + 1):
            try:
                async with limit:
                    body = await asyncio.wait_for(self._post(client, request), self.options.timeout)
                reply = parse_completion(body)
                return read(reply.choices[0].message, params)
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError, TimeoutError,
                    BadReply) as error:
                if attempt == self.options.retries:
                    raise ComponentError(self._describe(error, attempt + 1)) from None
            except openai.APIStatusError as error:  # other 4xx: retrying will not help
                raise ComponentError(self._describe(error, attempt + 1)) from None
            await asyncio.sleep(delay * (1 + random.random() / 4))
            delay *= 2
        raise AssertionError("unreachable")

    async def _post(self, client: Any, request: dict[str, Any]) -> bytes:
        """The body of the 2xx reply to ``request``; past ``max_reply_bytes`` it is a :class:`BadReply`."""
        cap = self.options.max_reply_bytes
        body = bytearray()
        async with client.chat.completions.with_streaming_response.create(**request) as response:
            try:
                async for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        raise BadReply(f"more than {cap} bytes (raise `max_reply_bytes:` if that is expected)",
                                       bytes(body))
            except BadReply:
                raise
            except Exception as error:  # the HTTP library's own (httpx or httpx2) error: connection cut, bad gzip
                raise BadReply(f"the body broke off after {len(body)} bytes ({type(error).__name__}: {error})",
                               bytes(body)) from None
        return bytes(body)

    def _describe(self, error: Exception, attempts: int) -> str:
        import openai

        where = f"OpenAI-compatible endpoint {self.options.base_url} (model {self.options.model!r})"
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if isinstance(error, BadReply):
            shown = error.body[:SHOWN * 4].decode("utf-8", errors="replace")[:SHOWN]
            return (f"the {where} sent a reply misstep cannot use ({tries}): {error.problem}; it began {shown!r}. "
                    "Check that `base_url:` is an OpenAI-compatible endpoint (ending in /v1)")
        if isinstance(error, (openai.APITimeoutError, TimeoutError)):
            return f"the {where} did not answer within {self.options.timeout:g}s ({tries}); raise `timeout:`"
        if isinstance(error, openai.APIConnectionError):
            return f"cannot reach the {where} ({tries}): {error} Start the server or fix `base_url:`"
        status = getattr(error, "status_code", 0)
        hint = {
            401: f"set the API key in the environment variable {self.options.api_key_env}",
            404: "check `model:` against the endpoint's /v1/models and `base_url:` (it should end in /v1)",
            429: "rate limited: lower `concurrency:` or raise `retries:`",
        }.get(status, "check `model:` and the sampling options")
        return f"the {where} answered HTTP {status} ({tries}): {_message(error).rstrip('.')}; {hint}"


def reply_of(message: ReplyMessage, parser: ToolCallParser[Any], params: Sampling) -> ParsedReply:
    """A native-calling reply from an API message: its ``tool_calls`` (arguments are JSON strings), or, when it
    has none, the calls that ``parser`` finds in its text."""
    content = cut_at_stop(message.content or "", params.stop)
    if not message.tool_calls:
        return parser.parse(content)
    calls = []
    for call in message.tool_calls:
        name, arguments = call.function.name, call.function.arguments
        if isinstance(arguments, str):
            text = arguments
            try:
                arguments = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as error:
                return ParsedReply(content=content, error=f"the arguments of the call to {name!r} are not JSON "
                                                          f"({error.msg}): {text[:80]!r}")
        if not isinstance(arguments, dict):
            return ParsedReply(content=content, error=f"the arguments of the call to {name!r} are not a JSON object")
        calls.append(ParsedCall(name=name, arguments=arguments, id=call.id or None))
    return ParsedReply(content=content.strip(), calls=tuple(calls))


def _message(error: Exception) -> str:
    """The server's own explanation, from an OpenAI-style or FastAPI-style error body."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        if "message" in body or "detail" in body:
            return str(body.get("message") or body.get("detail"))
    return str(error)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion, also when called from code that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
