"""The checks that need no protocol state: order, snaplen, malformed packets, allow-lists, UDP
sequence numbers, and request/response pairing with latency."""

from __future__ import annotations

import ipaddress
import struct
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ...events import exists
from ...multiplex.keys import key_function
from .base import Check, CheckResult, Finding, Status

if TYPE_CHECKING:
    from ...events import EventManager
    from ..reader import CaptureSummary

__all__ = ["AllowList", "Malformed", "OutOfOrder", "RequestResponse", "Sliced", "UdpSequence"]


def _status(failed: bool) -> Status:
    return "fail" if failed else "pass"


class OutOfOrder(Check):
    """Timestamps that step back within a file (count and worst step per file): from the readers."""

    name = "out_of_order"
    portable = True
    cost = 0.05

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        steps = {s.name: s.steps_back for s in summaries if s.steps_back}
        worst = max((s.worst_step_ns for s in summaries), default=0)
        examples = [Finding(s.name, s.first_step_back or 0, s.first_step_back_ns or 0,
                            f"{s.steps_back} steps back, worst {s.worst_step_ns / 1000:.3f} us")
                    for s in summaries if s.steps_back]
        total = sum(steps.values())
        summary = (f"{total} timestamps step back ({', '.join(f'{k}: {v}' for k, v in steps.items())}), worst "
                   f"{worst / 1000:.3f} us" if total else "every file is in timestamp order")
        return CheckResult(self.name, _status(bool(total)), summary,
                           {"steps_back": total, "worst_step_ns": worst, "per_file": steps}, examples)


class Sliced(Check):
    """Packets the capture cut short (caplen < wirelen): counted; payload rules on them are not checkable."""

    name = "snaplen"
    portable = True
    cost = 0.2

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail, self.count = fail, 0

    def attach(self, events: EventManager) -> None:
        events.register(self._sliced, {"sliced": True}, {"name": "snaplen"})

    def _sliced(self, record: dict[str, Any]) -> None:
        self.count += 1
        self.note(record, f"captured {record['caplen']} of {record['wirelen']} bytes")

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        packets = sum(s.packets for s in summaries)  # the readers counted them: no callback per packet
        summary = (f"{self.count} of {packets} packets cut short by the snaplen: payload rules on them are not "
                   "checkable" if self.count else "no packet was cut short")
        status: Status = ("fail" if self.fail else "not checkable") if self.count else "pass"
        return CheckResult(self.name, status, summary, {"sliced": self.count, "packets": packets}, self.examples)


class Malformed(Check):
    """Packets whose headers could not be read (decode's ``malformed``), and damaged files."""

    name = "malformed"
    portable = True
    cost = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def attach(self, events: EventManager) -> None:
        events.register(self._malformed, {"malformed": exists()}, {"name": "malformed"})

    def _malformed(self, record: dict[str, Any]) -> None:
        self.count += 1
        self.note(record, record["malformed"])

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        damage = [d for s in summaries for d in s.damage]
        examples = self.examples + [Finding(d.file, d.frame or 0, d.ts_ns or 0, f"file damage at byte {d.offset}: "
                                            f"{d.reason}") for d in damage[:10]]
        summary = f"{self.count} malformed packets, {len(damage)} file damage reports"
        return CheckResult(self.name, _status(bool(self.count or damage)), summary,
                           {"malformed": self.count, "damage": len(damage)}, examples)


class AllowList(Check):
    """Hosts and ports outside an allow-list (networks like ``10.0.0.0/8``, ports like 22)."""

    name = "hosts"
    portable = True
    cost = 0.6

    def __init__(self, hosts: Iterable[str] = (), ports: Iterable[int] = ()) -> None:
        super().__init__()
        self.networks = [ipaddress.ip_network(h, strict=False) for h in hosts]
        self.ports = set(ports)
        self.unexpected_hosts: dict[str, int] = {}
        self.unexpected_ports: dict[int, int] = {}
        self._known: dict[str, bool] = {}

    def attach(self, events: EventManager) -> None:
        if self.networks:
            events.register(self._hosts, {"ip": exists()}, {"name": "hosts.ip"})
        if self.ports:
            events.register(self._ports, {"tcp": exists()}, {"name": "hosts.tcp"})
            events.register(self._ports, {"udp": exists()}, {"name": "hosts.udp"})

    def _allowed(self, address: str) -> bool:
        known = self._known.get(address)
        if known is None:
            ip = ipaddress.ip_address(address)
            known = self._known[address] = any(ip in net for net in self.networks)
        return known

    def _hosts(self, record: dict[str, Any]) -> None:
        for address in (record["ip"]["src"], record["ip"]["dst"]):
            if not self._allowed(address):
                if address not in self.unexpected_hosts:
                    self.note(record, f"host {address} is not in the allow-list")
                self.unexpected_hosts[address] = self.unexpected_hosts.get(address, 0) + 1

    def _ports(self, record: dict[str, Any]) -> None:
        l4 = record.get("tcp") or record["udp"]
        if l4["sport"] not in self.ports and l4["dport"] not in self.ports:
            port = min(l4["sport"], l4["dport"])
            if port not in self.unexpected_ports:
                self.note(record, f"port {l4['sport']} -> {l4['dport']}: neither is in the allow-list")
            self.unexpected_ports[port] = self.unexpected_ports.get(port, 0) + 1

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        if not self.networks and not self.ports:
            return CheckResult(self.name, "not checkable", "no allow-list configured")
        bad = len(self.unexpected_hosts) + len(self.unexpected_ports)
        summary = f"{len(self.unexpected_hosts)} unexpected hosts, {len(self.unexpected_ports)} unexpected ports"
        return CheckResult(self.name, _status(bool(bad)), summary,
                           {"unexpected_hosts": dict(self.unexpected_hosts),
                            "unexpected_ports": {str(k): v for k, v in self.unexpected_ports.items()}}, self.examples)


class UdpSequence(Check):
    """Gaps, duplicates and steps back of a sequence number carried in UDP payloads (per flow)."""

    name = "udp_sequence"
    portable = True
    cost = 0.3
    _FORMATS: ClassVar[dict[int, str]] = {1: "B", 2: "H", 4: "I", 8: "Q"}

    def __init__(self, port: int, offset: int = 0, size: int = 4, byteorder: str = "big", name: str = "") -> None:
        super().__init__()
        if size not in self._FORMATS:
            raise ValueError(f"udp_sequence: size must be 1, 2, 4 or 8 bytes, not {size!r}")
        self.name = name or f"udp_sequence:{port}"  # type: ignore[misc]
        self.port, self.offset = port, offset
        self.unpack = struct.Struct((">" if byteorder == "big" else "<") + self._FORMATS[size]).unpack_from
        self.end = offset + size
        self.next: dict[tuple[Any, ...], int] = {}
        self.counts = {"packets": 0, "gaps": 0, "missing": 0, "duplicates": 0, "back": 0, "not_checkable": 0}

    def attach(self, events: EventManager) -> None:
        events.register(self._packet, {"udp.dport": self.port}, {"name": self.name})

    def _packet(self, record: dict[str, Any]) -> None:
        counts = self.counts
        counts["packets"] += 1
        payload = record.get("payload", b"")
        if len(payload) < self.end:
            counts["not_checkable"] += 1
            return
        seq = self.unpack(payload, self.offset)[0]
        flow = (record["source"], record["ip"]["src"], record["udp"]["sport"], record["ip"]["dst"])
        expected = self.next.get(flow)
        if expected is not None and seq != expected:
            if seq > expected:
                counts["gaps"] += 1
                counts["missing"] += seq - expected
                self.note(record, f"sequence {seq}, expected {expected}: {seq - expected} missing")
            elif seq == expected - 1:
                counts["duplicates"] += 1
                self.note(record, f"sequence {seq} repeated")
            else:
                counts["back"] += 1
                self.note(record, f"sequence {seq} after {expected - 1}")
        if expected is None or seq >= expected - 1:
            self.next[flow] = max(seq + 1, expected or 0)

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        c = self.counts
        if not c["packets"]:
            return CheckResult(self.name, "not checkable", f"no UDP packet to port {self.port}", dict(c))
        summary = f"{c['gaps']} gaps ({c['missing']} missing), {c['duplicates']} repeats, {c['back']} steps back"
        return CheckResult(self.name, _status(bool(c["gaps"] or c["duplicates"] or c["back"])), summary, dict(c),
                           self.examples)


class RequestResponse(Check):
    """Pairs requests and responses (two conditions and a key), with latency percentiles.

    ``request_key`` and ``response_key`` name the fields that must be equal for a response to
    answer a request, e.g. ``["ip.src", "udp.sport"]`` and ``["ip.dst", "udp.dport"]``.
    A request unanswered after ``timeout`` seconds counts as unanswered; a response with no
    request waiting, as unsolicited. A waiting request is kept as its timestamp, file and frame
    only, and expired ones are swept every ``timeout`` seconds of capture time: memory follows
    the requests in flight, however many go unanswered.
    """

    name = "reqresp"
    portable = True
    cost = 0.6

    def __init__(self, request: dict[str, Any], response: dict[str, Any], request_key: Sequence[str],
                 response_key: Sequence[str], timeout: float = 1.0, name: str = "", max_p99_ms: float | None = None):
        super().__init__()
        if len(request_key) != len(response_key):
            raise ValueError("reqresp: request_key and response_key must name as many fields")
        self.name = name or "reqresp"  # type: ignore[misc]
        self.request, self.response = request, response
        self.request_key = [key_function(k) for k in request_key]
        self.response_key = [key_function(k) for k in response_key]
        self.timeout_ns = int(timeout * 1e9)
        self.max_p99_ms = max_p99_ms
        self.waiting: dict[tuple[Any, ...], deque[tuple[int, str, int]]] = {}  # key -> (ts_ns, file, frame)...
        self.latencies: array[int] = array("q")  # ns, 8 bytes each
        self.requests = self.unanswered = self.unsolicited = 0
        self._sweep_at: int | None = None

    def attach(self, events: EventManager) -> None:
        events.register(self._request, self.request, {"name": f"{self.name}.request"})
        events.register(self._response, self.response, {"name": f"{self.name}.response"})

    def _key(self, getters: list[Any], record: dict[str, Any]) -> tuple[Any, ...] | None:
        try:
            return tuple(get(record) for get in getters)
        except KeyError:
            return None

    def _request(self, record: dict[str, Any]) -> None:
        key = self._key(self.request_key, record)
        if key is not None:
            self.requests += 1
            now = record["ts_ns"]
            self.waiting.setdefault(key, deque()).append((now, record["source"], record["index"]))
            self._sweep(now)

    def _response(self, record: dict[str, Any]) -> None:
        key = self._key(self.response_key, record)
        now = record["ts_ns"]
        self._sweep(now)
        queue = self.waiting.get(key) if key is not None else None
        if queue:
            self._expire(queue, now)
        if not queue:
            self.unsolicited += 1
            self.note(record, "response with no request waiting")
            return
        self.latencies.append(now - queue.popleft()[0])
        if not queue:
            del self.waiting[key]

    def _expire(self, queue: deque[tuple[int, str, int]], now: int | None) -> None:
        """Count the requests of ``queue`` older than the timeout at ``now`` (all, for None) as unanswered."""
        while queue and (now is None or now - queue[0][0] > self.timeout_ns):
            ts, file, frame = queue.popleft()
            self.unanswered += 1
            self.note_at(file, frame, ts, f"request unanswered after {self.timeout_ns / 1e9:g} s")

    def _sweep(self, now: int) -> None:
        """Every ``timeout`` of capture time, expire what waited too long on any key."""
        if self._sweep_at is None:
            self._sweep_at = now + self.timeout_ns
        elif now >= self._sweep_at:
            self._sweep_at = now + self.timeout_ns
            for key, queue in list(self.waiting.items()):
                self._expire(queue, now)
                if not queue:
                    del self.waiting[key]

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        for queue in self.waiting.values():
            self._expire(queue, None)
        self.waiting.clear()
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6, 3) if lat else None

        counts = {"requests": self.requests, "answered": len(lat), "unanswered": self.unanswered,
                  "unsolicited": self.unsolicited, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                  "max_ms": round(lat[-1] / 1e6, 3) if lat else None}
        if not self.requests and not self.unsolicited:
            return CheckResult(self.name, "not checkable", "no request or response seen", counts)
        slow = self.max_p99_ms is not None and lat and counts["p99_ms"] > self.max_p99_ms
        summary = (f"{self.requests} requests, {len(lat)} answered (p50 {counts['p50_ms']} ms, p99 {counts['p99_ms']} "
                   f"ms, max {counts['max_ms']} ms), {self.unanswered} unanswered, {self.unsolicited} unsolicited")
        return CheckResult(self.name, _status(bool(self.unanswered or self.unsolicited or slow)), summary, counts,
                           self.examples)
