"""HTTP servers on 127.0.0.1 for backend tests: each answers POSTs with a function of the request handler."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[BaseHTTPRequestHandler], None]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not wait for answers a client gave up on (timeouts, endless replies)

    def handle_error(self, request, client_address):
        pass  # a client that gave up closes its socket early


def send(handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str = "application/json") -> None:
    """Answer with ``status`` and ``data`` as the whole body."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Servers:
    """The servers a test started; ``close()`` stops them all."""

    def __init__(self) -> None:
        self.servers: list[QuietServer] = []

    def start(self, answer: Answer) -> str:
        """A server answering each POST with ``answer(handler)``; its OpenAI-style base URL (``.../v1``)."""

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                answer(self)

            def log_message(self, *args):
                pass

        server = QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
