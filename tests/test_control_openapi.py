"""The OpenAPI document of the control API: the served one is the one in docs/, and the server keeps
to it (schemathesis, every check, against a real server on 127.0.0.1 over real actors)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chronopipe.control import open_control
from chronopipe.control.openapi import document
from control_helper import Recorded, call, idle_actors

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "control.openapi.json"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TOKEN = "the-token-of-the-openapi-tests-0123456789"


@pytest.fixture
def served(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    idle_actors()
    target = Recorded()
    with open_control(target, token=TOKEN) as server:
        yield server, target


def test_the_served_document_is_the_one_in_docs(served):
    server, _ = served
    status, _, served_document = call(server.url, "GET", "/openapi.json")
    assert status == 200
    assert served_document == json.loads(DOCUMENT.read_text()), \
        "docs/control.openapi.json is out of date: run venv/bin/python -m chronopipe.control.openapi"
    assert served_document == document()


def test_every_operation_documents_the_refusals_of_the_guard():
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"401", "403", "500", "503"} <= documented, (method, path)
            if method == "post":
                assert {"400", "413", "415"} <= documented, (method, path)
                assert operation["security"] == [{"bearer": []}]
            else:
                assert operation["security"] == [{}, {"bearer": []}]


def test_schemathesis_finds_no_failure_against_the_served_document(served, tmp_path):
    server, target = served
    done = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "40",
         "--header", f"Authorization: Bearer {TOKEN}", "--generation-database", "none", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout
    # It posts to /kill as to any endpoint: the target counts its kills instead of ending the process
    # serving, which is this test's own (pytest's worker).
    assert target.kills > 0
