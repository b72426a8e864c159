"""Every example in examples/ runs to its end: exit status 0, no traceback (they are documentation)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_the_example_runs_to_its_end(example):
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=120,
                          cwd=example.parent)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


# `tshark -r F -Y "frame.len > 1400" | wc -l` gives 4 and 6 for the example's two captures;
# `editcap -w 0.001 ssh-dups.pcap out` drops 280 (as tests/test_validate.py).
def test_the_validation_example_reports_what_its_captures_hold():
    done = subprocess.run([sys.executable, str(EXAMPLES[0].parent / "validate_captures.py")], capture_output=True,
                          text=True, timeout=120)
    assert "FAIL          duplicates       280 of 391 packets" in done.stdout
    assert "10 packets over 1,400 bytes" in done.stdout
