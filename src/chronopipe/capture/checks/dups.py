"""Duplicate packets: the same packet again within a time window, on one tap or across taps.

Two copies of a packet are the same when their IP packets are equal once the fields a hop
rewrites are blanked: from the IP header on, with the TTL / hop limit and the IPv4 header
checksum zeroed (:func:`normalized`), so a copy seen after a router (new MACs, TTL one lower)
still matches. Frames with no IP header compare whole. The checks keep a 64-bit hash of that
(:func:`packet_key`: Python's ``hash`` of the bytes, twice as fast as a blake2b-64 digest and
as good within one run, 2**-64 collision odds per pair) in a dict of hash -> last sighting, in
two generations of one window each: memory holds at most two windows of packets, whatever the
capture's size.

:func:`normalized` and :func:`packet_key` are shared with the clock check (clock.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..reader import seconds_to_ns
from .base import Check, CheckResult, Status

if TYPE_CHECKING:
    from ...events import EventManager
    from ..reader import CaptureSummary

__all__ = ["Duplicates", "ip_offset", "normalized", "packet_key"]

#: where the IP header starts for each link type decode.py reads (Ethernet: see ip_offset)
_IP_OFFSET = {0: 4, 108: 4, 101: 0, 228: 0, 229: 0, 14: 0, 113: 16, 276: 20}
_ZERO1, _ZERO2 = b"\0", b"\0\0"
KEY_FIELD = "packet_key"  #: where packet_key caches its value in the record


def ip_offset(record: dict[str, Any]) -> int | None:
    """Where the IP header starts in ``record["data"]``, from the link type (None: unknown link).

    >>> ip_offset({"linktype": 1, "eth": {"vlan": [10]}}), ip_offset({"linktype": 113}), ip_offset({"linktype": 9})
    (18, 16, None)
    """
    linktype = record["linktype"]
    if linktype == 1:
        eth = record["eth"]
        if "vlan" in eth or "mpls" in eth:
            return 14 + 4 * (len(eth.get("vlan", ())) + len(eth.get("mpls", ())))
        return 14
    return _IP_OFFSET.get(linktype)


def normalized(record: dict[str, Any]) -> bytes:
    """The bytes two copies of one packet share: the IP packet with TTL and IPv4 checksum zeroed.

    From the IP header to the end of the IP packet (its total length: Ethernet padding is left
    out); the TTL (IPv4) or hop limit (IPv6) and the IPv4 header checksum are zeroed. A frame
    without an IP header (ARP, other link types) is returned whole.

    >>> from chronopipe.capture import decode
    >>> ip = bytes.fromhex("45000014" "1c46" "4000" "40" "06" "b1e6" "c0a80001" "c0a80002")
    >>> a = decode((1, 0, 1, 34, 34, 1, bytes.fromhex("ffffffffffff" "020000000001" "0800") + ip))
    >>> hop = ip[:8] + b"\\x3f" + ip[9:10] + b"\\xb2\\xe6" + ip[12:]           # TTL 63, new checksum
    >>> b = decode((2, 0, 2, 34, 34, 1, bytes.fromhex("0a0000000002" "0a0000000001" "0800") + hop))
    >>> normalized(a) == normalized(b), normalized(a).hex()
    (True, '450000141c46400000060000c0a80001c0a80002')
    """
    data = record["data"]
    ip = record.get("ip")
    if ip is None:
        return data  # type: ignore[no-any-return]
    pos = ip_offset(record)
    if pos is None:
        return data  # type: ignore[no-any-return]
    length = ip["len"]
    if ip["version"] == 4:
        end = pos + length if length >= 20 else len(data)  # total length 0: TSO, the sender's capture
        return b"".join((data[pos:pos + 8], _ZERO1, data[pos + 9:pos + 10], _ZERO2, data[pos + 12:end]))
    end = pos + length if length > 40 else len(data)
    return b"".join((data[pos:pos + 7], _ZERO1, data[pos + 8:end]))


def packet_key(record: dict[str, Any]) -> int:
    """A 64-bit hash of :func:`normalized`, kept in the record (``record["packet_key"]``) for the next check.

    Equal for two records when their normalized bytes are equal (it hashes the same bytes, in
    three slices, without joining them: 40% faster); valid within one process only, as ``hash``.

    >>> from chronopipe.capture import decode
    >>> r = decode((1, 0, 1, 4, 4, 147, b"abcd"))
    >>> packet_key(r) == hash(b"abcd") == r["packet_key"]
    True
    """
    key = record.get(KEY_FIELD)
    if key is not None:
        return key  # type: ignore[no-any-return]
    data = record["data"]
    ip = record.get("ip")
    if ip is None:
        pos = None
    elif record["linktype"] == 1 and len(record["eth"]) == 3:  # Ethernet without VLAN or MPLS: most packets
        pos = 14
    else:
        pos = ip_offset(record)
    if pos is None:
        key = hash(data)
    else:
        length = ip["len"]  # type: ignore[index]
        if ip["version"] == 4:  # type: ignore[index]
            end = pos + length if length >= 20 else len(data)
            key = hash((data[pos:pos + 8], data[pos + 9:pos + 10], data[pos + 12:end]))
        else:
            end = pos + length if length > 40 else len(data)
            key = hash((data[pos:pos + 7], data[pos + 8:end]))
    record[KEY_FIELD] = key
    return key  # type: ignore[no-any-return]


class Duplicates(Check):
    """Packets repeated within ``window`` seconds (default 1 ms): on the same tap or across taps.

    A packet is a duplicate when the same packet (:func:`normalized`) was seen at most
    ``window`` before it, on any tap; each packet is compared with the latest earlier copy, so a
    packet seen three times counts two duplicates (as ``editcap -w`` drops two). Counts:
    ``duplicates`` = ``within_tap`` (the earlier copy on the same tap) + ``across_taps``.
    Fails when ``within_tap`` > ``max_within_tap`` (default 0: a tap that records a packet twice,
    as a SPAN port mirroring both ingress and egress, is a capture fault), or ``across_taps`` >
    ``max_across_taps`` (default None: not judged, since taps on one path all see its packets;
    these copies are what the clock check pairs). Taps with clocks apart by more than the window
    do not match: correct their offsets first (the clock check measures them).

    ``compare="frame"`` compares whole frames instead (MACs, TTL and checksum included): what
    ``editcap -w`` does. The default ``"ip"`` also finds copies a router forwarded, and copies
    that differ only in a (wrong) IPv4 header checksum.
    """

    name = "duplicates"
    portable = True
    cost = 1.2

    def __init__(self, window: float | str = 0.001, max_within_tap: int = 0, max_across_taps: int | None = None,
                 compare: Literal["ip", "frame"] = "ip") -> None:
        super().__init__()
        if compare not in ("ip", "frame"):
            raise ValueError(f"duplicates: compare is 'ip' or 'frame', not {compare!r}")
        self.compare = compare
        self._frames = compare == "frame"
        self.window_ns = seconds_to_ns(window)
        if self.window_ns < 0:
            raise ValueError(f"duplicates: window is in seconds >= 0, not {window!r}")
        self.max_within_tap, self.max_across_taps = max_within_tap, max_across_taps
        self.packets = self.within_tap = self.across_taps = 0
        self.per_source: dict[str, int] = {}
        self._current: dict[int, tuple[int, str, int]] = {}
        self._previous: dict[int, tuple[int, str, int]] = {}
        self._rotate_at: int | None = None

    def attach(self, events: EventManager) -> None:
        events.register(self._packet, None, {"name": "duplicates"})

    def _packet(self, record: dict[str, Any]) -> None:
        ts = record["ts_ns"]
        self.packets += 1
        current = self._current
        if self._rotate_at is None or ts >= self._rotate_at:
            self._previous, self._current = current, {}
            current = self._current
            self._rotate_at = ts + self.window_ns + 1
        key = hash(record["data"]) if self._frames else (record.get(KEY_FIELD) or packet_key(record))
        earlier = current.get(key) or self._previous.get(key)
        current[key] = (ts, record["source"], record["index"])
        if earlier is not None and abs(ts - earlier[0]) <= self.window_ns:
            self._duplicate(record, earlier)

    def _duplicate(self, record: dict[str, Any], earlier: tuple[int, str, int]) -> None:
        ts, source, index = earlier
        if source == record["source"]:
            self.within_tap += 1
        else:
            self.across_taps += 1
            if self.max_across_taps is None:  # expected copies: keep the examples for the faults
                return
        self.per_source[record["source"]] = self.per_source.get(record["source"], 0) + 1
        self.note(record, f"duplicate of {source}:{index}, {(record['ts_ns'] - ts) / 1000:.3f} us later")

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        total = self.within_tap + self.across_taps
        counts = {"packets": self.packets, "duplicates": total, "within_tap": self.within_tap,
                  "across_taps": self.across_taps, "per_source": dict(self.per_source),  # judged ones, by tap
                  "window_ns": self.window_ns,
                  "compare": self.compare}
        if not self.packets:
            return CheckResult(self.name, "not checkable", "no packet seen", counts)
        window = f"{self.window_ns / 1e6:g} ms"
        summary = (f"{total} of {self.packets} packets repeat one seen within {window} ({self.within_tap} on the "
                   f"same tap, {self.across_taps} across taps)" if total else f"no packet repeats within {window}")
        failed = self.within_tap > self.max_within_tap or (self.max_across_taps is not None
                                                             and self.across_taps > self.max_across_taps)
        status: Status = "fail" if failed else "pass"
        return CheckResult(self.name, status, summary, counts, self.examples)
