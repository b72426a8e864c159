"""What the control API's tests share: one HTTP call (http.client, a connection per call), a few
real actors to serve, and a target over them whose kill is recorded."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Any

import chronopipe as cp
from chronopipe.control import ActorsTarget, InputClosed, InputFull

__all__ = ["SECRET", "Recorded", "call", "idle_actors", "killed"]

#: The one secret of a Recorded target.
SECRET = "hunter2-the-profile-password"


def call(url: str, method: str, path: str, *, token: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """``method path`` on the server at ``url``: (status, headers with lower-case names, the JSON
    answer or None for an empty body). ``body``: bytes are sent as they are, anything else as JSON
    (with ``Content-Type: application/json`` unless ``headers`` says another)."""
    parts = urllib.parse.urlsplit(url)
    sent = dict(headers or {})
    if token is not None:
        sent.setdefault("Authorization", f"Bearer {token}")
    payload = None
    if body is not None:
        if isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=payload, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        got = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    return response.status, got, json.loads(raw) if raw else None


def idle_actors(mode: str = "thread", n: int = 2) -> tuple[list[cp.Actor], list[cp.Channel]]:
    """``n`` started actors of the process's Runtime waiting on their inboxes (``mode`` hosting),
    and the inboxes (close them, or stop the actors, to end them)."""
    inboxes = [cp.Channel(name=f"in{i}", mode=mode) for i in range(n)]
    actors = [cp.Actor(f"echo{i}", lambda x: x, inbox=inbox, mode=mode).start() for i, inbox in enumerate(inboxes)]
    return actors, inboxes


class Recorded(ActorsTarget):
    """The Runtime's actors; an input "orders" (full past 3 records, closed once ``closed`` is set);
    features; the secret SECRET. ``kill`` is counted instead of done: the real one ends the
    process serving, which is the test's own (pytest's worker)."""

    def __init__(self, name: str = "test") -> None:
        super().__init__(name, cp.Runtime().actors)
        self.kills, self.pushed, self.closed = 0, [], False

    def inputs(self) -> list[str]:
        return ["orders"]

    def push(self, input: str, records: list[Any]) -> int:
        if input != "orders":
            raise KeyError(input)
        if self.closed:
            raise InputClosed("orders is closed")
        if len(self.pushed) + len(records) > 3:
            raise InputFull("orders is full", retry_after=0.2)
        self.pushed.extend(records)
        return len(records)

    def features(self) -> dict[str, dict[str, list[str]]]:
        return {"orders": {"id": ["int"], "price": ["float", "NoneType"]}}

    def kill(self) -> None:
        self.kills += 1

    def secrets(self) -> list[str]:
        return [SECRET]


def killed(target: Recorded, times: int = 1) -> bool:
    """The target's kill was called ``times`` times (it is called just after the answer left: this
    waits a little for it)."""
    deadline = time.monotonic() + 2
    while target.kills < times and time.monotonic() < deadline:
        time.sleep(0.01)
    return target.kills == times
