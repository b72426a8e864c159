"""The control API's OpenAPI 3 document, as a Python dict; served at GET /openapi.json.

``python -m chronopipe.control.openapi`` writes it to docs/control.openapi.json (a test checks
that the served document and that file are the same, and runs schemathesis against it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .commands import MAX_STOP_TIMEOUT
from .target import ACTOR_FIELDS

__all__ = ["document", "main"]

JSON = "application/json"
OPEN_READS = ("GETs need no token on a loopback address (127.0.0.1, ::1); on any other address "
              "every request needs the bearer token.")
#: A command type: a type name of at most 54 characters (so its events are type names too),
#: or that with the seed's ``_REQUESTED``; never named like an event.
COMMAND_TYPE = {
    "type": "string",
    "pattern": "^[A-Z][A-Z0-9_]{0,53}(_REQUESTED)?$",
    "not": {"pattern": "_(SUCCEEDED|FAILED|REJECTED)(_REQUESTED)?$"},
    "description": "GET_INFO, GET_ACTORS, GET_STATS, GET_FEATURES, PUSH, STOP or KILL (others are "
                   "answered <TYPE>_REJECTED); the seed's STOP_REQUESTED means STOP.",
}
ID = {"type": "string", "minLength": 1, "maxLength": 128}
ERRORS = {
    400: "The request is not HTTP the server can read, or the body is not what the endpoint takes (not a JSON "
         "object, a field missing, wrong or unknown).",
    401: "No bearer token, or a wrong one (Authorization: Bearer <token>).",
    403: "The Host header is not this server's, or the Origin is foreign (DNS rebinding, cross-site).",
    404: "No input of that name.",
    409: "The input is closed.",
    413: "The body is over the size cap (64 KiB by default).",
    415: "The body is not application/json.",
    429: "The input is full: retry after the seconds of Retry-After.",
    500: "The target raised: one line, never a traceback.",
    503: "The control server is closing, or serves as many connections as it takes (64) already.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), *, extra: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if not extra:
        schema["additionalProperties"] = False
    return schema


def _schemas() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    unknown = {**count, "nullable": True}
    actor = _object({
        "name": {"type": "string"}, "mode": {"type": "string"}, "state": {"type": "string"},
        "pid": {"type": "integer"},
        "received": {**unknown, "description": "records it received (null: not counted, a sync-mode node)"},
        "emitted": {**unknown, "description": "records it sent on (null: not counted, a sync-mode node)"},
        "rate": {"type": "number", "minimum": 0, "nullable": True,
                 "description": "records/s received over the last second or more (null: not measured)"},
        "queue": {**unknown, "description": "records buffered in its inbox (null: it has none, a sync-mode node)"},
        "rss": {"type": "integer", "nullable": True, "description": "resident bytes of its process"},
        "restarts": count, "dead_letters": count,
    }, ACTOR_FIELDS)
    totals = _object({k: count for k in ("received", "emitted", "dead_letters", "restarts")},
                     ("received", "emitted", "dead_letters", "restarts"))
    stats = _object({"state": {"type": "string"}, "seconds": {"type": "number"}, "totals": _ref("Totals"),
                     "actors": {"type": "array", "items": _ref("Actor")}}, ("state", "seconds", "totals", "actors"))
    message = {"kind": {"type": "string"}, "type": {"type": "string"}, "id": ID, "timestamp": {"type": "number"},
               "correlation_id": {**ID, "nullable": True}, "data": {"type": "object"}}
    return {
        "Error": _object({"error": {"type": "string"}}, ("error",)),
        "Health": _object({"status": {"type": "string", "enum": ["ok"]}}, ("status",)),
        "Info": _object({
            "name": {"type": "string"}, "kind": {"type": "string"}, "state": {"type": "string"},
            "running": {"type": "array", "items": {"type": "string"}}, "version": {"type": "string"},
            "pid": {"type": "integer"}, "started_at": {"type": "number", "description": "Unix time"},
            "inputs": {"type": "array", "items": {"type": "string"}},
        }, ("name", "kind", "state", "running", "version", "pid", "started_at", "inputs")),
        "Actor": actor,
        "Actors": _object({"actors": {"type": "array", "items": _ref("Actor")}}, ("actors",)),
        "Totals": totals,
        "Stats": stats,
        "Stopped": {**stats, "properties": {**stats["properties"], "state": {
            "type": "string", "enum": ["finished", "failed", "cancelled", "stopping"],
            "description": "how the run ended, or stopping: it goes on"}}},
        "Features": _object({"features": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}}},
            ("features",)),
        "PushRequest": _object({"input": {"type": "string", "minLength": 1}, "records": {"type": "array"}},
                               ("input", "records"), extra=False),
        "Pushed": _object({"input": {"type": "string"}, "accepted": count}, ("input", "accepted")),
        "StopRequest": _object({"timeout": {"type": "number", "minimum": 0, "maximum": MAX_STOP_TIMEOUT,
                                            "description": "seconds to wait for the drain (default 30)"}},
                               extra=False),
        "KillRequest": _object({}, extra=False),
        "Killing": _object({"state": {"type": "string", "enum": ["killing"]}}, ("state",)),
        "Command": _object({**message, "kind": {"type": "string", "enum": ["command"]}, "type": COMMAND_TYPE},
                           ("type",), extra=False),
        "Event": _object({**message, "kind": {"type": "string", "enum": ["event"]}},
                         ("kind", "type", "id", "timestamp", "correlation_id", "data")),
    }


def _answer(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        answer["headers"] = headers
    return answer


def _errors(*statuses: int) -> dict[str, Any]:
    answers = {}
    for status in statuses:
        headers = None
        if status == 401:
            headers = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        elif status == 429:
            headers = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
        answers[str(status)] = _answer("Error", ERRORS[status], headers)
    return answers


def _get(summary: str, schema: str, description: str) -> dict[str, Any]:
    return {"get": {
        "summary": summary, "description": description + " " + OPEN_READS,
        "security": [{}, {"bearer": []}],
        "responses": {"200": _answer(schema, summary), **_errors(400, 401, 403, 500, 503)},
    }}


def _post(summary: str, description: str, request: str, ok: tuple[int, str], *statuses: int,
          required: bool = True) -> dict[str, Any]:
    code, schema = ok
    return {"post": {
        "summary": summary, "description": description, "security": [{"bearer": []}],
        "requestBody": {"required": required, "content": {JSON: {"schema": _ref(request)}}},
        "responses": {str(code): _answer(schema, summary),
                      **_errors(*sorted({400, 401, 403, 413, 415, 500, 503, *statuses}))},
    }}


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the control API (a new dict on each call)."""
    paths = {
        "/health": _get("Alive", "Health", "Always {\"status\": \"ok\"} while the server serves."),
        "/info": _get("What is running", "Info", "The target's name, kind and state, what runs, the inputs, "
                      "chronopipe's version, the pid and the server's start time."),
        "/actors": _get("One row per actor", "Actors", "State, records in and out, rate, queue, RSS, restarts "
                        "and dead letters of each actor."),
        "/stats": _get("Counts", "Stats", "The state, seconds running, totals and the actor rows."),
        "/features": _get("Fields seen", "Features", "Per input: field names and the type names seen."),
        "/openapi.json": {"get": {
            "summary": "This document", "description": OPEN_READS, "security": [{}, {"bearer": []}],
            "responses": {"200": {"description": "This document",
                                  "content": {JSON: {"schema": {"type": "object"}}}},
                          **_errors(400, 401, 403, 500, 503)},
        }},
        "/commands": _post("Answer a command", "A chronopipe.messages Command (only type is needed) is answered "
                           "200 with its one terminal Event: <TYPE>_SUCCEEDED (data.result), <TYPE>_FAILED or "
                           "<TYPE>_REJECTED (data.reason).", "Command", (200, "Event")),
        "/push": _post("Push records into an input", "Records into the named input (GET /info lists them).",
                       "PushRequest", (200, "Pushed"), 404, 409, 429),
        "/stop": _post("Drain and end", "Stop taking input, let in-flight records finish and be acknowledged, "
                       "then answer the final counts (state stopping if the timeout ran out first).",
                       "StopRequest", (200, "Stopped"), required=False),
        "/kill": _post("End now", "Answered 202, then the process ends within a second.", "KillRequest",
                       (202, "Killing"), required=False),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "chronopipe control API", "version": "1",
            "description": "The control plane of a running chronopipe Runtime, pipeline or run (docs/control.md). "
                           "Every request's Host must name the server and an Origin, when sent, must be "
                           "http://<that host>: else 403. A verb a path does not take is 405 (with Allow); an "
                           "unknown path 404. Errors are {\"error\": \"one line\"}.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description":
                                           "The token: the server's token= or CHRONOPIPE_TOKEN, else the file "
                                           "whose path the server printed (mode 0600)."}},
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Write the document to ``argv[0]`` (default docs/control.openapi.json of this checkout)."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parents[3] / "docs" / "control.openapi.json"
    path.write_text(json.dumps(document(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
