"""Helpers and fixtures of the fault matrix: a loopback HTTP server the test scripts (the broken server),
a llama-server of the test's own (to kill), bounded runs and the leak check."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
HI = [{"role": "user", "content": "hi"}]
BOUND = 60.0  # seconds: no fault may make a call hang longer than this
# What a llama-server answers while it loads its model (server.cpp, ERROR_TYPE_UNAVAILABLE).
LOADING_503 = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
# The answers of a healthy llama-server's probe (/props, /v1/models, /tokenize, /health).
PROBE: dict[str, Any] = {
    "/props": {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}", "bos_token": "<s>",
               "eos_token": "</s>", "total_slots": 1, "default_generation_settings": {"n_ctx": 4096}},
    "/v1/models": {"object": "list", "data": [{"id": "loopback", "object": "model"}]},
    "/tokenize": {"tokens": [1]},
    "/health": {"status": "ok"},
}

# A route answers one request: it gets the handler and writes whatever it likes (or nothing).
Route = Callable[[BaseHTTPRequestHandler], None]


def reply(status: int, body: bytes | str | dict[str, Any] | list[Any], *, declared_length: int | None = None,
          content_type: str = "application/json") -> Route:
    """A route writing ``body``; ``declared_length`` longer than the body makes a truncated reply."""
    data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(declared_length or len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()
        handler.close_connection = True

    return route


def silent(seconds: float) -> Route:
    """A route that accepts the request and says nothing for ``seconds`` (a slow server), or
    until the client hangs up, so the test's own server holds no socket after the client left."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            readable, _, _ = select.select([handler.connection], [], [], 0.05)
            if readable and not handler.connection.recv(1, socket.MSG_PEEK):
                return  # the client closed the connection

    return route


@dataclass
class Loopback:
    """A tiny HTTP server in a thread that plays a broken llama-server: the probe answers
    normally (``probe=True``) and ``routes`` (path -> route) override what the test breaks."""

    routes: dict[str, Route] = field(default_factory=dict)
    probe: bool = True

    def __post_init__(self) -> None:
        loopback = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                path = self.path.split("?")[0]
                if path in loopback.routes:
                    loopback.routes[path](self)
                elif loopback.probe and path in PROBE:
                    reply(200, PROBE[path])(self)
                else:
                    reply(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})(self)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, name="loopback", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def loopback() -> Iterator[Callable[..., Loopback]]:
    """Make loopback servers (``loopback(routes, probe=...)``); all are shut down afterwards."""
    made: list[Loopback] = []

    def make(routes: dict[str, Route] | None = None, probe: bool = True) -> Loopback:
        made.append(Loopback(routes or {}, probe))
        return made[-1]

    yield make
    for server in made:
        server.close()


def resources() -> tuple[int, int]:
    """(open file descriptors, live threads) of this process."""
    return len(os.listdir("/proc/self/fd")), threading.active_count()


def steady_resources() -> tuple[int, int]:
    """``resources()`` once the executor threads of event loops closed earlier have ended: a
    closed loop (the blocking facade's) lets its default executor's threads finish on their own."""
    deadline = time.monotonic() + 10
    while any(t.name.startswith("asyncio_") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return resources()


def _within(before: tuple[int, int]) -> bool:
    now = resources()
    return now[0] <= before[0] and now[1] <= before[1]


def assert_no_leaks(before: tuple[int, int]) -> None:
    """The process holds no more than it held before (a leak grows a count; an earlier test's
    thread or socket may end meanwhile, so fewer is fine). Handler threads and sockets of a
    loopback server may take a moment to finish, so this waits (bounded) for the counts first."""
    deadline = time.monotonic() + 10
    while not _within(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _within(before), f"(fds, threads) before {before}, after {resources()}"


async def bounded(call: Awaitable[T]) -> T:
    """``call``, which must end (with its answer or its error) within BOUND seconds."""
    return await asyncio.wait_for(call, BOUND)


async def check_fault(fault: Callable[[], Awaitable[Any]], error: type[BaseException]) -> BaseException:
    """Run ``fault`` (which opens a provider, calls it and closes it) once to warm up lazily made
    pools, then again with the leak check; both must raise ``error`` within the bound."""
    with pytest.raises(error):
        await bounded(fault())
    before = resources()
    with pytest.raises(error) as caught:
        await bounded(fault())
    assert_no_leaks(before)
    return caught.value


def check_fault_sync(fault: Callable[[], Any], error: type[BaseException]) -> BaseException:
    """``check_fault`` for the blocking facade: ``fault`` runs in a thread joined with a timeout,
    so a hang fails the test instead of stalling it."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fault()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    def once() -> BaseException:
        outcome.clear()
        worker = threading.Thread(target=run, name="fault")
        worker.start()
        worker.join(BOUND)
        assert not worker.is_alive(), f"the blocking call did not end within {BOUND} s"
        assert isinstance(outcome[0], error), f"expected {error.__name__}, got {outcome[0]!r}"
        return outcome[0]

    once()
    before = steady_resources()
    caught = once()
    assert_no_leaks(before)
    return caught
