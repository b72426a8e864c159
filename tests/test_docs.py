"""What the README and docs/ show a reader is what the commands print.

Every ```text block that starts with ``$ <command>`` is run from a scratch folder that sees the
project's ``venv``, ``examples`` and ``tests`` (so outputs such as ``-w merged.pcapng`` land there),
and its printed lines are compared with the block's: timings and rates are blanked, and a line
``...`` stands for any number of lines.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VARYING = [
    (re.compile(r"\d[\d,]*(\.\d+)? (rows|packets|records|statements|items|events)?/s\b"), "<rate>"),
    (re.compile(r"\b\d+\.\d+ s\b"), "<seconds>"),
]


def examples() -> list[tuple[str, str, list[str]]]:
    """(page:line, shell command, expected lines) of every runnable text block."""
    found = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line != "```text" or not lines[i + 1].startswith("$ "):
                continue
            j = i + 1
            command = lines[j][2:]
            while command.endswith("\\"):
                j += 1
                command = command[:-1] + " " + lines[j].strip()
            end = lines.index("```", j)
            found.append((f"{page.relative_to(ROOT)}:{i + 1}", command, lines[j + 1:end]))
    return found


def normal(line: str) -> str:
    for pattern, blank in VARYING:
        line = pattern.sub(blank, line)
    return line.rstrip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` (with ``...`` lines as wildcards) matches ``actual`` line by line."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and normal(expected[0]) == normal(actual[0]) and matches(expected[1:], actual[1:])


EXAMPLES = examples()


def test_the_pages_show_runnable_examples():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(("where", "command", "expected"), EXAMPLES, ids=[where for where, _, _ in EXAMPLES])
def test_a_documented_command_prints_what_the_page_says(tmp_path, where, command, expected):
    for name in ("venv", "examples", "tests", "main.py"):
        (tmp_path / name).symlink_to(ROOT / name)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    printed = (done.stdout + done.stderr).splitlines()
    assert matches(expected, printed), f"{where}: {command}\n--- page\n" + "\n".join(expected) + \
        "\n--- printed\n" + "\n".join(printed)
