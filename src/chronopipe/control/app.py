"""The aiohttp application of the control API: its routes and the guard every request passes.

Imported by ``ControlServer.start`` alone (it imports aiohttp; ``chronopipe.control`` does not).
The guard answers, in this order: 503 while the server closes; 403 for a Host that is not ours
or a foreign Origin; 401 without the token where one is needed (every verb but GET/HEAD, and
those too on a non-loopback bind); 404 / 405 for an unknown path or verb; then, for a POST with
a body: 413 over the size cap, 415 unless ``application/json``, 400 unless a JSON object. Every
answer is JSON (``{"error": "one line"}`` for a refusal) and passes through the scrub.
"""

from __future__ import annotations

import asyncio
import logging
import math
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..messages import MessageError
from ..messages.values import check_text, load
from .commands import handle_command, run_blocking, stop_timeout
from .security import Scrubber, bearer_matches, host_allowed, origin_allowed
from .target import InputClosed, InputFull

if TYPE_CHECKING:
    from .server import ControlServer

__all__ = ["BadRequest", "log_error", "make_app", "one_line", "respond"]

log = logging.getLogger("chronopipe.control")
SERVER: web.AppKey[ControlServer] = web.AppKey("control_server")
#: Where the guard leaves the parsed body for the handler (a typed key where aiohttp has them, 3.13+)
BODY: Any = web.RequestKey("chronopipe_body", dict) if hasattr(web, "RequestKey") else "chronopipe_body"
OPEN_VERBS = frozenset({"GET", "HEAD"})
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class BadRequest(Exception):  # noqa: N818 (an HTTP answer, as aiohttp's HTTPBadRequest)
    """A request body the endpoint cannot take: answered ``status`` with the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def one_line(exc: BaseException) -> str:
    """``"ExcType: first line of the message"`` (never a traceback)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _scrubber(server: ControlServer) -> tuple[Scrubber, bool]:
    """The scrub of the token and the target's secrets; False if ``secrets()`` raised."""
    try:
        return Scrubber([server.token, *server.target.secrets()]), True
    except Exception as exc:
        log.error("control: %s.secrets() raised %s", type(server.target).__name__,
                  Scrubber([server.token]).text(one_line(exc)))
        return Scrubber([server.token]), False


def log_error(server: ControlServer, message: str, exc: BaseException | None = None) -> None:
    """Log ``message`` (and ``exc``'s one line, its traceback at DEBUG) at ERROR on
    ``chronopipe.control``, scrubbed of the token and the target's secrets as an answer is."""
    scrubber = _scrubber(server)[0]
    text = message if exc is None else f"{message}: {one_line(exc)}"
    if exc is not None and log.isEnabledFor(logging.DEBUG):
        text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    log.error("%s", scrubber.text(text))


def respond(server: ControlServer, data: Any, status: int = 200, headers: dict[str, str] | None = None
            ) -> web.Response:
    """A JSON response of ``data``, scrubbed of the token and the target's secrets. Its encoding
    cannot fail (a lone surrogate leaves as the JSON escape ``\\udXXX``): an answer made after
    the target acted is always sent."""
    scrubber, ok = _scrubber(server)
    if not ok:
        status, data = 500, {"error": "the target's secrets() failed"}
    body = scrubber.dumps(data)
    return web.Response(body=body.encode("utf-8", "backslashreplace"), status=status, content_type="application/json",
                        charset="utf-8", headers={**HEADERS, **(headers or {})})


def refuse(server: ControlServer, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return respond(server, {"error": message}, status, headers)


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
    server = request.app[SERVER]
    connection = request.protocol  # a connections.ControlHandler: not idle while it answers
    began = getattr(connection, "request_began", None)
    if began is not None:
        began()
    server.inflight += 1
    try:
        return await _guarded(server, request, handler)
    finally:
        server.inflight -= 1
        if began is not None:
            connection.request_ended()


async def _guarded(server: ControlServer, request: web.Request, handler: Callable[[web.Request], Any]
                   ) -> web.StreamResponse:
    try:
        if server.closing:
            return refuse(server, 503, "the control server is closing")
        if not host_allowed(request.headers.get("Host"), server.allowed):
            return refuse(server, 403, "this Host is not allowed (use the address the server printed)")
        if not origin_allowed(request.headers.get("Origin"), server.allowed):
            return refuse(server, 403, "this Origin is not allowed")
        if (request.method not in OPEN_VERBS or server.reads_need_token) and \
                not bearer_matches(request.headers.get("Authorization"), server.token):
            return refuse(server, 401, "needs the header Authorization: Bearer <token>",
                          {"WWW-Authenticate": 'Bearer realm="chronopipe"'})
        missing = request.match_info.http_exception
        if missing is not None:
            if missing.status == 405:
                return refuse(server, 405, f"{request.method} is not allowed here",
                              {"Allow": missing.headers.get("Allow", "")})
            return refuse(server, missing.status, f"no endpoint {request.path}" if missing.status == 404
                          else missing.reason)
        if request.method == "POST":
            request[BODY] = await read_body(request, server.max_body)
        return await handler(request)
    except BadRequest as exc:
        return refuse(server, exc.status, str(exc))
    except web.HTTPException as exc:
        return refuse(server, exc.status, exc.reason)
    except Exception as exc:
        log_error(server, f"control: {request.method} {request.path}", exc)
        return refuse(server, 500, one_line(exc))


async def read_body(request: web.Request, cap: int) -> dict[str, Any]:
    """The POST body as a JSON object ({} when there is none).

    Raises:
        BadRequest: 413 over ``cap`` bytes, 415 not ``application/json``, 400 not a JSON object
            (NaN, Infinity, a number too large for a float, a duplicate key at any depth and a
            string that is not Unicode text, a lone surrogate, refused too), or its bytes did not
            all arrive within ``connections.BODY_TIMEOUT`` seconds.
    """
    from .connections import BODY_TIMEOUT

    if request.content_length is not None and request.content_length > cap:
        raise BadRequest(f"the body is over {cap} bytes", 413)
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise BadRequest(f"the body must be application/json, not {request.content_type or 'untyped'}", 415)
    try:
        raw = await asyncio.wait_for(request.read(), BODY_TIMEOUT)
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(f"the body is over {cap} bytes", 413) from None
    except TimeoutError:
        request.protocol.force_close()
        raise BadRequest(f"the body did not arrive within {BODY_TIMEOUT:g} s") from None
    if not raw:  # (a body of blanks is not JSON: refused below, as the document says)
        return {}
    try:
        value = load(raw.decode("utf-8"))
    except (MessageError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {str(exc).removeprefix('JSON: ')}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(value).__name__}")
    try:
        _check_texts(value)
    except MessageError as exc:
        raise BadRequest(str(exc)) from None
    return value


def _check_texts(value: Any) -> None:
    """MessageError for a string of ``value`` (keys too) that is not Unicode text (iterative:
    as deep as JSON nests)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item, "a string in the body")
        elif isinstance(item, dict):
            for key in item:
                check_text(key, "a key in the body")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Raises BadRequest for a key of ``body`` the endpoint does not take."""
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (this endpoint takes {', '.join(allowed) or 'none'})")


# -- endpoints -------------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    return respond(request.app[SERVER], {"status": "ok"})


async def info(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return respond(server, server.describe())


async def actors(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return respond(server, {"actors": list(server.target.actors())})


async def stats(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return respond(server, server.target.stats())


async def features(request: web.Request) -> web.Response:
    server = request.app[SERVER]
    return respond(server, {"features": server.target.features()})


async def openapi(request: web.Request) -> web.Response:
    from .openapi import document

    return respond(request.app[SERVER], document())


async def push(request: web.Request) -> web.Response:
    server, body = request.app[SERVER], request[BODY]
    fields(body, ("input", "records"))
    name, records = body.get("input"), body.get("records")
    if not isinstance(name, str) or not name:
        raise BadRequest("'input' must be the name of an input (a non-empty string)")
    if not isinstance(records, list):
        raise BadRequest("'records' must be a list")
    try:
        accepted = server.target.push(name, records)
    except KeyError:
        known = ", ".join(server.target.inputs()) or "none"
        raise BadRequest(f"no input named {name!r} (inputs: {known})", 404) from None
    except InputFull as exc:
        return refuse(server, 429, str(exc) or "the input is full",
                      {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
    except InputClosed as exc:
        raise BadRequest(str(exc) or f"input {name!r} is closed", 409) from None
    return respond(server, {"input": name, "accepted": int(accepted)})


async def stop(request: web.Request) -> web.Response:
    server, body = request.app[SERVER], request[BODY]
    fields(body, ("timeout",))
    try:
        timeout = stop_timeout(body)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    target = server.target
    return respond(server, await run_blocking(lambda: target.stop(timeout)))


async def kill(request: web.Request) -> web.StreamResponse:
    server, body = request.app[SERVER], request[BODY]
    fields(body, ())
    response = respond(server, {"state": "killing"}, 202)
    await response.prepare(request)
    await response.write_eof()  # the answer leaves before anything ends
    try:
        server.target.kill()
    except Exception as exc:
        log_error(server, f"control: {type(server.target).__name__}.kill() raised", exc)
    return response


async def commands(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    try:
        event, after = await handle_command(server, request[BODY])
    except MessageError as exc:
        raise BadRequest(str(exc)) from None
    response = respond(server, event)
    if after is not None:  # KILL: its event leaves first
        await response.prepare(request)
        await response.write_eof()
        try:
            after()
        except Exception as exc:
            log_error(server, f"control: {type(server.target).__name__}.kill() raised", exc)
    return response


def make_app(server: ControlServer) -> web.Application:
    """The application serving ``server.target`` (``client_max_size`` is the body cap)."""
    app = web.Application(middlewares=[guard], client_max_size=server.max_body)
    app[SERVER] = server
    for path, handler in (("/health", health), ("/info", info), ("/actors", actors), ("/stats", stats),
                          ("/features", features), ("/openapi.json", openapi)):
        app.router.add_get(path, handler)
    for path, handler in (("/commands", commands), ("/push", push), ("/stop", stop), ("/kill", kill)):
        app.router.add_post(path, handler)
    return app
