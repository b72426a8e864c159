"""TCP sequence analysis: segments the capture missed, retransmissions, ACKs of data never seen.

Per direction of each TCP connection the check keeps the next expected sequence number and,
only while there are any, the holes it has seen (``[start, end)`` ranges of sequence space no
captured segment covered). A segment is, against that number:

* **in order** (starts at it): the number moves on by its length (+1 for SYN, +1 for FIN);
* a **gap** (starts beyond it): "previous segment not captured"; the hole is remembered;
* **behind** it, with data (or SYN / FIN): a **retransmission**, unless it is a keep-alive (0
  or 1 byte at the number - 1) or it fills a hole at most ``reorder`` seconds (default 3 ms, as
  tshark without an RTT) after the hole was seen: then it is **out of order**. A retransmission
  of data the peer had already acknowledged is also counted as **spurious**.

An ACK from the peer beyond the start of a hole, or beyond everything seen, acknowledges data
the capture never showed: **acked_unseen** (once per ACK that reaches new unseen data).

Each hole is then classified once: filled by a retransmission = **network_loss** (the sender
resent it: it was lost before this tap); acknowledged by the peer without a retransmission, or
never filled at all = **capture_loss** (the receiver got it: this capture dropped it); filled
quickly = out_of_order. A direction whose peer acknowledged data beyond the last segment seen
(a lost tail, a missing FIN) counts as one more gap, a capture loss. So ``gaps`` =
``capture_loss`` + ``network_loss`` + ``out_of_order`` at the end.

Flows whose start was not captured start wherever the capture first sees them: no gap is
counted for what came before. Sequence numbers compare modulo 2**32 (wraparound). A SYN with a
new initial sequence number starts a new connection on the same 4-tuple (port reuse). RST
segments advance nothing (their sequence number may be anywhere in the window) but their ACK
is checked. Zero-length segments beyond the next expected number are gaps too (tshark agrees).

**Taps**: by default a direction is keyed by (tap, src, sport, dst, dport): each tap (record
``source``) saw its own copy of the traffic, and keyed without the tap, tap B's copy of every
segment would look like a retransmission of tap A's. ``per_tap=False`` keys by the 4-tuple
alone, for taps that each see a different part of the traffic (one direction each, as
half-duplex taps): their merge is then analysed as one capture.

**Compared with tshark** (``tcp.analysis.*``): ``gaps`` = ``lost_segment``; ``retransmissions``
= ``retransmission`` (which in tshark includes ``fast_retransmission`` and
``spurious_retransmission``; out-of-order segments are neither); ``acked_unseen`` differs on
purpose: tshark flags every ACK beyond its contiguous frontier until a segment starts exactly at
that frontier, so one lost segment whose ACK is captured before the segment after it is flagged
on two ACKs; here an ACK counts only when it acknowledges unseen data no earlier ACK did (one).
Holes are kept per direction until resolved (normally none): the per-packet cost is one dict
lookup and a few integer comparisons.

**Memory** follows the open connections, not every connection ever seen: a connection both
sides ended (a FIN each way, or an RST) is forgotten ``linger`` seconds of capture time after
its end (default 60 s, TCP's usual TIME-WAIT), its unresolved holes counted as they would be at
the end of the run. A segment of it after that (a very late retransmission) opens a new flow.
``linger=None`` keeps every connection to the end.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ...events import exists
from ..reader import seconds_to_ns
from .base import Check, CheckResult, Status

if TYPE_CHECKING:
    from ...events import EventManager
    from ..reader import CaptureSummary

__all__ = ["TcpAnalysis", "seq_after"]

_M = 0xFFFFFFFF
_HALF = 0x80000000
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
COUNTS = ("segments", "gaps", "missing_bytes", "retransmissions", "spurious", "out_of_order", "keep_alives",
          "acked_unseen", "capture_loss", "network_loss")


_NEVER = float("inf")


def _reverse(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """The key of the other direction: (tap,) src sport dst dport -> (tap,) dst dport src sport."""
    return (*key[:-4], key[-2], key[-1], key[-4], key[-3])


def seq_after(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (modulo 2**32, as TCP compares them).

    >>> seq_after(10, 5), seq_after(5, 10), seq_after(5, 5), seq_after(3, 0xFFFFFFF0)   # the last wraps
    (True, False, False, True)
    """
    return 0 < ((a - b) & _M) < _HALF


class _Direction:
    """One direction of one connection, as one tap saw it."""

    __slots__ = ("acked", "ended", "holes", "isn", "nxt", "rev", "where")

    def __init__(self, nxt: int, isn: int | None, where: str) -> None:
        self.nxt = nxt  #: next expected sequence number
        self.isn = isn  #: the SYN's sequence number, if the SYN was seen
        self.acked: int | None = None  #: the highest ACK the peer sent for this direction
        self.holes: list[list[Any]] | None = None  #: unresolved [start, end, ts_ns] gaps
        self.rev: _Direction | None = None  #: the other direction
        self.where = where  #: "src:sport -> dst:dport", for findings
        self.ended: int | None = None  #: ts_ns of its FIN, or of an RST either way


class TcpAnalysis(Check):
    """Sequence gaps, retransmissions and ACKs of unseen data per TCP flow (see the module docstring).

    ``max_gaps``: gaps that are losses (``capture_loss`` + ``network_loss``) allowed before the
    check fails (default 0); ``max_acked_unseen`` the same for ACKs of unseen data (default 0);
    ``max_retransmissions`` (default None: not judged). ``reorder``: seconds within which a
    segment filling a hole is out of order rather than a retransmission. ``per_tap``: key flows
    by tap too (default; see the module docstring). ``linger``: seconds of capture time after
    which a connection ended both ways is forgotten (default 60; None keeps all).
    """

    name = "tcp"
    portable = True
    cost = 1.25

    def __init__(self, max_gaps: int = 0, max_acked_unseen: int = 0, max_retransmissions: int | None = None,
                 reorder: float | str = 0.003, per_tap: bool = True, linger: float | str | None = 60.0) -> None:
        super().__init__()
        self.max_gaps, self.max_acked_unseen, self.max_retransmissions = max_gaps, max_acked_unseen, max_retransmissions
        self.reorder_ns = seconds_to_ns(reorder)
        self.per_tap = per_tap
        self.linger_ns = None if linger is None else seconds_to_ns(linger)
        if self.linger_ns is not None and self.linger_ns < 0:
            raise ValueError(f"tcp: linger is in seconds >= 0 (or None), not {linger!r}")
        self.flows = 0  #: connections seen (per tap unless per_tap=False)
        self.forgotten = 0  #: connections forgotten after their end (see the module docstring)
        self.counts = dict.fromkeys(COUNTS, 0)
        self._dirs: dict[tuple[Any, ...], _Direction] = {}
        self._ended: deque[tuple[int, tuple[Any, ...]]] = deque()  # (ts_ns, key) of each end, in time order
        self._sweep_at = _NEVER  # when the oldest end is due to be forgotten

    def attach(self, events: EventManager) -> None:
        events.register(self._segment, {"tcp": exists()}, {"name": "tcp"})

    # -- per packet ------------------------------------------------------------------------
    def _segment(self, record: dict[str, Any]) -> None:
        tcp = record["tcp"]
        ip = record["ip"]
        key = ((record["source"], ip["src"], tcp["sport"], ip["dst"], tcp["dport"]) if self.per_tap
               else (ip["src"], tcp["sport"], ip["dst"], tcp["dport"]))
        flags, seq = tcp["flags"], tcp["seq"]
        seglen = tcp["len"] + (flags & FIN) + ((flags & SYN) >> 1)
        self.counts["segments"] += 1
        if record["ts_ns"] >= self._sweep_at:
            self._sweep(record["ts_ns"])
        s = self._dirs.get(key)
        if s is None or (flags & SYN and seq != s.isn):
            s = self._open(key, record, seq, seglen, flags)
        elif not flags & RST:
            d = (seq - s.nxt) & _M
            if d == 0:
                if seglen:
                    s.nxt = (seq + seglen) & _M
            elif d < _HALF:
                self._gap(s, record, seq, seglen, d)
            else:
                self._behind(s, record, seq, seglen, d, flags)
        if flags & ACK:
            r = s.rev
            if r is not None:
                ack = tcp["ack"]
                acked = r.acked
                if acked is None or 0 < ((ack - acked) & _M) < _HALF:
                    r.acked = ack
                    if r.holes or 0 < ((ack - r.nxt) & _M) < _HALF:
                        self._ack_beyond(r, record, ack)
        if flags & (FIN | RST) and self.linger_ns is not None:
            self._end(s, key, flags, record["ts_ns"])

    # -- forgetting ended connections ------------------------------------------------------
    def _end(self, s: _Direction, key: tuple[Any, ...], flags: int, ts: int) -> None:
        """A FIN ends its direction, an RST both; remember when, to forget them ``linger`` later."""
        s.ended = ts
        if flags & RST and s.rev is not None:
            s.rev.ended = ts
        if not self._ended:
            self._sweep_at = ts + self.linger_ns  # type: ignore[operator]
        self._ended.append((ts, key))

    def _sweep(self, now: int) -> None:
        """Forget the connections that ended (both ways) at least ``linger`` before ``now``."""
        linger, ended, dirs = self.linger_ns, self._ended, self._dirs
        assert linger is not None
        while ended and ended[0][0] + linger <= now:
            _, key = ended.popleft()
            s = dirs.get(key)
            if s is None or s.ended is None or s.ended + linger > now:
                continue  # forgotten already, or a new connection on the same 4-tuple
            r = s.rev
            if r is not None and (r.ended is None or r.ended + linger > now):
                continue  # the other way is still open: its own end will come here again
            self._retire(s)
            del dirs[key]
            if r is not None:
                self._retire(r)
                del dirs[_reverse(key)]
            self.forgotten += 1
        self._sweep_at = ended[0][0] + linger if ended else _NEVER

    def _open(self, key: tuple[Any, ...], record: dict[str, Any], seq: int, seglen: int, flags: int) -> _Direction:
        """The first segment of a direction (or a SYN starting a new connection on its 4-tuple)."""
        tcp = record["tcp"]
        ip = record["ip"]
        s = _Direction((seq + seglen) & _M, seq if flags & SYN else None,
                       f"{ip['src']}:{tcp['sport']} -> {ip['dst']}:{tcp['dport']}")
        old = self._dirs.get(key)
        if old is not None:
            self._retire(old)
        rkey = _reverse(key)
        r = self._dirs.get(rkey)
        if r is not None and flags & SYN and (not flags & ACK or r.isn != (tcp["ack"] - 1) & _M):
            # a new connection (a SYN, or a SYN-ACK not answering the peer's SYN): the peer's state is the old one's
            self._retire(r)
            del self._dirs[rkey]
            r = None
        if r is None:
            self.flows += 1
        else:
            r.rev, s.rev = s, r
        self._dirs[key] = s
        return s

    def _retire(self, s: _Direction) -> None:
        """A direction replaced by a new connection: what it left unresolved is capture loss."""
        c = self.counts
        lost = len(s.holes or ()) + (s.acked is not None and seq_after(s.acked, s.nxt))
        c["capture_loss"] += lost
        c["gaps"] += s.acked is not None and seq_after(s.acked, s.nxt)
        if s.rev is not None and s.rev.rev is s:
            s.rev.rev = None
        s.holes, s.acked = None, None

    def _gap(self, s: _Direction, record: dict[str, Any], seq: int, seglen: int, missing: int) -> None:
        c = self.counts
        c["gaps"] += 1
        c["missing_bytes"] += missing
        start = s.nxt
        s.nxt = (seq + seglen) & _M
        if s.acked is not None and seq_after(s.acked, start):  # the peer acknowledged it before we saw this
            c["capture_loss"] += 1
            self.note(record, f"{s.where}: previous segment not captured ({missing} bytes before seq {seq}), "
                              "already acknowledged: capture loss")
            return
        if s.holes is None:
            s.holes = []
        s.holes.append([start, seq, record["ts_ns"]])
        self.note(record, f"{s.where}: previous segment not captured ({missing} bytes before seq {seq})")

    def _behind(self, s: _Direction, record: dict[str, Any], seq: int, seglen: int, d: int, flags: int) -> None:
        c = self.counts
        if d == _M and seglen <= 1 and not flags & (SYN | FIN):
            c["keep_alives"] += 1
            return
        if not seglen:  # an ACK behind (crossing data, or reordered): no data to judge
            return
        end = (seq + seglen) & _M
        if 0 < ((end - s.nxt) & _M) < _HALF:  # overlaps past what was seen: the new part moves us on
            s.nxt = end
        if s.holes:
            for i, (start, stop, ts) in enumerate(s.holes):
                if seq_after(stop, seq) and seq_after(end, start):  # [seq, end) overlaps the hole
                    del s.holes[i]
                    if record["ts_ns"] - ts <= self.reorder_ns:
                        c["out_of_order"] += 1
                        return
                    c["network_loss"] += 1
                    break
        c["retransmissions"] += 1
        spurious = record["tcp"]["len"] > 0 and s.acked is not None and not seq_after(end, s.acked)
        c["spurious"] += spurious
        if self.max_retransmissions is not None:  # judged: show them; otherwise keep the examples for losses
            self.note(record, f"{s.where}: {'spurious ' if spurious else ''}retransmission of seq {seq} ({seglen} "
                              "bytes)")

    def _ack_beyond(self, r: _Direction, record: dict[str, Any], ack: int) -> None:
        """The peer's ACK reaches past a hole of ``r`` or past all ``r`` sent that we saw."""
        unseen = seq_after(ack, r.nxt)
        if r.holes:
            kept = [hole for hole in r.holes if not seq_after(ack, hole[0])]
            self.counts["capture_loss"] += len(r.holes) - len(kept)
            unseen = unseen or len(kept) < len(r.holes)
            r.holes = kept or None
        if unseen:
            self.counts["acked_unseen"] += 1
            self.note(record, f"ACK {ack} of data of {r.where} that was not captured")

    # -- verdict ---------------------------------------------------------------------------
    def final_counts(self) -> dict[str, Any]:
        """The counts, with what is still unresolved classified: open holes and unseen tails are capture loss."""
        c = dict(self.counts)
        holes = tails = 0
        for s in self._dirs.values():
            holes += len(s.holes or ())
            tails += s.acked is not None and seq_after(s.acked, s.nxt)
        c["gaps"] += tails
        c["capture_loss"] += holes + tails
        return {"flows": self.flows, **c}

    def result(self, summaries: list[CaptureSummary]) -> CheckResult:
        c = self.final_counts()
        if not c["segments"]:
            return CheckResult(self.name, "not checkable", "no TCP segment seen", c)
        lost = c["capture_loss"] + c["network_loss"]
        failed = (lost > self.max_gaps or c["acked_unseen"] > self.max_acked_unseen
                  or (self.max_retransmissions is not None and c["retransmissions"] > self.max_retransmissions))
        summary = (f"{c['flows']} flows, {c['segments']} segments: {c['gaps']} gaps ({c['capture_loss']} capture "
                   f"loss, {c['network_loss']} network loss, {c['out_of_order']} out of order), "
                   f"{c['retransmissions']} retransmissions, {c['acked_unseen']} ACKs of unseen data")
        status: Status = "fail" if failed else "pass"
        return CheckResult(self.name, status, summary, c, self.examples)
