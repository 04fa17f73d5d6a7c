"""A webhook receiver on 127.0.0.1 for the e2e tests: keeps every JSON body POSTed to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Message:
    """One notification as received: when (time.monotonic()) and its JSON body."""

    at: float
    body: dict[str, Any]

    @property
    def text(self) -> str:
        return f"{self.body.get('subject', '')}\n{self.body.get('body', '')}"


@dataclass
class Receiver:
    """The URL to configure and what arrived there, oldest first."""

    url: str
    messages: list[Message] = field(default_factory=list)

    def matching(self, needle: str, since: float = 0.0) -> list[Message]:
        """The messages whose subject or body contains `needle`, received at or after `since`."""
        return [m for m in list(self.messages) if m.at >= since and needle in m.text]

    def wait_for(self, accept: Callable[[Message], bool], what: str, timeout: float) -> Message:
        """The first message `accept` takes; fails after `timeout` s with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in list(self.messages) if accept(m)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                got = "\n---\n".join(m.text for m in self.messages[-10:])
                raise AssertionError(f"no {what} after {timeout:g} s; received:\n{got}")
            time.sleep(0.2)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A ThreadingHTTPServer on a free loopback port, in a thread of this process."""
    messages: list[Message] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"body": raw.decode(errors="replace")}
            messages.append(Message(time.monotonic(), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", messages)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
