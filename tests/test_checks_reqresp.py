"""RequestResponse: pairing by key, latency, unanswered and unsolicited, and memory that follows what is in flight.

tests/test_validate.py compares its counts and latencies with tshark's on a real capture; these
records are made here, one field per thing the check reads.
"""

from checks_helper import T0, run_records
from chronopipe.capture.checks import RequestResponse

MS = 1_000_000


def request(n: int, at_ms: float, key: int | None = None) -> dict:
    return {"ts_ns": T0 + int(at_ms * MS), "source": "tap", "index": n, "kind": "request", "id": n if key is None
            else key}


def response(n: int, at_ms: float, key: int | None = None) -> dict:
    return {"ts_ns": T0 + int(at_ms * MS), "source": "tap", "index": n, "kind": "response", "id": n if key is None
            else key}


def pairing(**options) -> RequestResponse:
    return RequestResponse({"kind": "request"}, {"kind": "response"}, ["id"], ["id"], **options)


def test_a_response_answers_the_oldest_request_waiting_on_its_key():
    records = [request(1, 0, key=7), request(2, 5, key=7), response(3, 12, key=7), response(4, 20, key=7)]
    result = run_records(records, [pairing()])["reqresp"]
    assert {k: result.counts[k] for k in ("requests", "answered", "unanswered", "unsolicited", "max_ms")} == \
        {"requests": 2, "answered": 2, "unanswered": 0, "unsolicited": 0, "max_ms": 15.0}


def test_a_request_past_the_timeout_is_unanswered_and_its_late_response_unsolicited():
    records = [request(1, 0), response(2, 1500, key=1)]
    result = run_records(records, [pairing(timeout=1.0)])["reqresp"]
    assert (result.counts["unanswered"], result.counts["unsolicited"], result.status) == (1, 1, "fail")
    assert [(e.frame, e.what) for e in result.examples] == [(1, "request unanswered after 1 s"),
                                                            (2, "response with no request waiting")]


def test_requests_never_answered_do_not_pile_up_in_memory():
    check, sizes = pairing(timeout=1.0), []
    records = [request(n, at_ms=n * 10) for n in range(10_000)]  # 100 per second for 100 s, none answered
    for record in records:
        check._request(record)
        sizes.append(len(check.waiting))
    assert max(sizes) <= 2 * 100 + 1  # what came in the last timeout or two, not all 10,000
    result = check.result([])
    assert (result.counts["requests"], result.counts["unanswered"]) == (10_000, 10_000) and not check.waiting


def test_a_key_answered_leaves_nothing_behind():
    check = pairing()
    run_records([request(n, n) for n in range(500)] + [response(1000 + n, 600 + n, key=n) for n in range(500)],
                [check])
    assert check.waiting == {}
