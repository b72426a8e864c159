"""A validation run from Python: the built-in checks, one rule of your own, two real captures.

The same run from the command line: ``chronopipe validate CAPTURE... --rules rules.py``.
"""

from pathlib import Path

from chronopipe.capture.report import to_text
from chronopipe.capture.rules import build_checks
from chronopipe.capture.validate import validate

DATA = Path(__file__).parent / "data" / "captures"
captures = [DATA / "ssh-dups.pcap", DATA / "unidirectional_tcp_stream_with_missing_packet.pcap"]

large = []  # (file, frame) of every packet over 1,400 bytes on the wire


def rules(events):
    """What a rules file's ``rules(em)`` does: register callbacks under Conditions."""
    events.register(lambda record: large.append((record["source"], record["index"])),
                    {"wirelen": lambda n: n > 1400})


checks = build_checks({"duplicates": {"window": 0.001}}, files=len(captures))
report = validate(captures, checks, rules=rules)
print(to_text(report))
print(f"\n{len(large)} packets over 1,400 bytes; the first: {large[0][0]}:{large[0][1]}")
