"""``chronopipe run/validate --control HOST:PORT`` and ``chronopipe status URL`` end to end (issue 20).

Each run test starts the real command line (``venv/bin/chronopipe``) as a subprocess over real
data (a copy of examples/data/datatraining.txt followed as a live file, so the run goes on until it
is stopped), reads the control API's URL and token file from its one stderr line, and talks to it
over HTTP on 127.0.0.1: what it answers while the run goes, ``chronopipe status`` on it, ``POST
/stop`` draining every row into the sink, no token nor profile secret in any answer, no process
left behind (psutil). The refusals (an address off loopback without a token, a closed port, a
server that is not ours, a token missing or wrong) are one line with their documented exit status.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

import chronopipe as cp
from chronopipe.cli import main
from chronopipe.cli.status import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_WRONG_SERVER
from control_helper import call
from postgres_helper import postgres  # noqa: F401
from processes_helper import no_children_left
from sources_helper import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
CHRONOPIPE = str(ROOT / "venv" / "bin" / "chronopipe")
DATA = ROOT / "examples" / "data" / "datatraining.txt"
LINES = 8144  # datatraining.txt, its header line included: the follow consumer stages every line
CAPTURES = ROOT / "tests" / "data" / "captures" / "taps"
SERVING = re.compile(r"^chronopipe: control API on (http://\S+) \((?:token in (\S+)|token from CHRONOPIPE_TOKEN)\)$")

FOLLOW_RUN = """\
runners:
  - name: lines
    variety: follow
    type: consumer
    path: in.txt
    stage: {{type: local, path: stage}}
    batch_configuration: {{size: 1000, seconds: 0.2}}
  - name: out
    variety: {sink}
    type: producer
    depends_on: [lines]
{options}"""


# -- helpers -----------------------------------------------------------------------------------
class Running:
    """A ``chronopipe`` subprocess whose stderr is read on a thread; ``url`` and ``token_file``
    from its control API line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([CHRONOPIPE, *args], cwd=cwd, env=env or _env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self.out: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.out_reader = threading.Thread(target=lambda: self.out.append(self.proc.stdout.read()),  # type: ignore[union-attr]
                                           daemon=True)
        self.out_reader.start()
        self.seen = [psutil.Process(self.proc.pid)]
        self.url, self.token_file = self._serving()

    def _read(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _serving(self, timeout: float = 30.0) -> tuple[str, Path | None]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.err.append(line)
            found = SERVING.match(line)
            if found:
                return found[1], Path(found[2]) if found[2] else None
        self.kill()
        raise AssertionError(f"no control API line on stderr: {self.err}")

    @property
    def token(self) -> str:
        assert self.token_file is not None
        return self.token_file.read_text().strip()

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the command to end: (exit status, stdout, the rest of stderr)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.reader.join(5)
        self.out_reader.join(5)
        while True:
            line = self.lines.get(timeout=5)
            if line is None:  # the end of stderr
                break
            self.err.append(line)
        return self.proc.returncode, "".join(self.out), "\n".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in self.seen:
            try:
                for child in p.children(recursive=True):
                    child.kill()
            except psutil.Error:
                pass


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CHRONOPIPE_TOKEN" and not k.startswith("CHRONOPIPE_PROFILE_")}
    return {**env, **extra}


def request(url: str, method: str = "GET", path: str = "/", body: object = None, token: str | None = None,
            ) -> tuple[int, bytes]:
    """One request to the control API at ``url`` (control_helper.call): (status, its headers and
    answer as JSON bytes, to grep)."""
    code, headers, answer = call(url, method, path, token=token, body=body, timeout=60)
    return code, json.dumps({"headers": headers, "answer": answer}).encode()


def get_json(url: str, path: str) -> dict:
    code, _, answer = call(url, "GET", path, timeout=60)
    assert code == 200, (path, code, answer)
    return answer


def follow_project(tmp_path: Path, sink: str = "csv", options: str = "    path: out\n",
                   profiles: dict | None = None) -> Path:
    (tmp_path / "in.txt").write_bytes(DATA.read_bytes())
    (tmp_path / "pipeline.yml").write_text(FOLLOW_RUN.format(sink=sink, options=options))
    if profiles is not None:
        file = tmp_path / "profiles.yml"
        file.write_text("".join(f"{name}:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items())
                                for name, fields in profiles.items()))
        file.chmod(0o600)
    return tmp_path


def csv_rows(folder: Path) -> list[str]:
    rows: list[str] = []
    for file in sorted(folder.glob("*.csv")):
        with file.open(newline="") as f:
            rows += [row[0] for row in list(csv.reader(f))[1:]]
    return rows


def row_of(stats: dict, name: str) -> dict:
    return next(row for row in stats["actors"] if row["name"] == name)


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([CHRONOPIPE, "status", *args], capture_output=True, text=True, timeout=30,
                          env=env or _env())
    assert "Traceback" not in done.stderr, done.stderr
    return done


# -- chronopipe run --control ------------------------------------------------------------------
@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_run_serves_its_stats_live_and_post_stop_drains_every_row_then_exits_0(tmp_path, mode):
    follow_project(tmp_path, options=f"    path: out\n    mode: {mode}\n")
    run = Running(["run", "pipeline.yml", "--control", "127.0.0.1:0"], tmp_path)
    try:
        assert run.url.startswith("http://127.0.0.1:")
        assert run.token_file is not None and run.token_file.stat().st_mode & 0o777 == 0o600

        def staged() -> bool:
            stats = get_json(run.url, "/stats")
            loaded = row_of(stats, "out")["emitted"]
            return row_of(stats, "lines")["emitted"] == LINES and loaded == LINES

        wait_until(staged, 30)  # the follow consumer waits for more lines: the run goes on
        stats = get_json(run.url, "/stats")
        assert stats["state"] == "running"
        lines, out = row_of(stats, "lines"), row_of(stats, "out")
        assert (lines["type"], lines["mode"], lines["state"], lines["received"]) == ("consumer", "thread", "running",
                                                                                      LINES)
        assert out["type"] == "producer" and out["mode"] == mode and out["rss"] > 0
        assert (out["unit"], out["rows"], out["received"], out["emitted"]) == ("rows", LINES, LINES, LINES)
        if mode == "thread":
            assert out["pid"] == run.proc.pid
        else:  # its figures are in its process: its live counts are in shared memory
            assert out["pid"] in [p.pid for p in psutil.Process(run.proc.pid).children()]
        assert {r["name"]: r["rows_out"] for r in stats["runners"]}["lines"] == LINES
        info = get_json(run.url, "/info")
        assert (info["kind"], info["path"], info["pid"]) == ("run", "pipeline.yml", run.proc.pid)
        assert [(r["name"], r["type"], r["state"]) for r in info["runners"]] == [("lines", "consumer", "running"),
                                                                                 ("out", "producer", "running")]

        assert request(run.url, "POST", "/stop", {"timeout": 30})[0] == 401, "a stop needs the token"
        code, body = request(run.url, "POST", "/stop", {"timeout": 30}, token=run.token)
        assert code == 200, body
        answer = json.loads(body)["answer"]
        assert (answer["state"], answer["run_state"]) == ("finished", "finished")
        assert answer["totals"]["received"] == LINES and answer["totals"]["emitted"] == LINES
        assert [(a["name"], a["unit"], a["received"], a["emitted"]) for a in answer["actors"]] == [
            ("lines", "rows", LINES, LINES), ("out", "rows", LINES, LINES)]
        token_file = run.token_file
        status_code, stdout, stderr = run.finish()
    finally:
        run.kill()
    assert status_code == 0, stderr
    assert sorted(csv_rows(tmp_path / "out")) == sorted(DATA.read_text().splitlines()), "every row loaded, once"
    assert re.search(r"^lines: rows in 8,144 = staged 8,144 \+ rejected 0 \+ late 0$", stdout, re.M), stdout
    assert not token_file.exists(), "the generated token file goes with the server"
    assert "Traceback" not in stderr
    no_children_left()


PROCESS_RUN = """\
runners:
  - name: lines
    variety: follow
    type: consumer
    mode: process
    path: in.txt
    stage: {type: local, path: stage}
    batch_configuration: {size: 1000, seconds: 0.2}
  - name: out
    variety: csv
    type: producer
    mode: process
    depends_on: [lines]
    path: out
"""


def summary_table(out: str) -> dict[str, tuple[int, int, int]]:
    """runner -> (rows, batches, skipped) from the summary table a run prints at its end."""
    table = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) == 7 and cells[1] in ("consumer", "producer"):
            table[cells[0]] = tuple(int(c.replace(",", "")) for c in cells[3:6])
    return table


@pytest.mark.timeout(120)
def test_process_runners_count_rows_live_and_their_last_stats_match_the_summary(tmp_path):
    """A consumer and a producer each in its own process: /stats counts their rows while the run
    goes on (the followed file grows), the totals include them, ``chronopipe status`` shows rows,
    and what the last /stats said before the stop is what the run's summary says at its end."""
    (tmp_path / "in.txt").write_bytes(DATA.read_bytes())
    (tmp_path / "pipeline.yml").write_text(PROCESS_RUN)
    run = Running(["run", "pipeline.yml", "--control", "127.0.0.1:0"], tmp_path)
    extra = 2500
    try:
        def counted(rows: int) -> bool:
            stats = get_json(run.url, "/stats")
            return row_of(stats, "lines")["emitted"] == rows and row_of(stats, "out")["emitted"] == rows

        wait_until(lambda: counted(LINES), 30)
        children = [p.pid for p in psutil.Process(run.proc.pid).children()]
        first = get_json(run.url, "/stats")
        with (tmp_path / "in.txt").open("a") as f:  # the run goes on: more lines to follow
            f.writelines(f"appended line {i}\n" for i in range(extra))
        wait_until(lambda: counted(LINES + extra), 30)
        stats = get_json(run.url, "/stats")
        done = status(run.url)
        code, body = request(run.url, "POST", "/stop", {"timeout": 30}, token=run.token)
        status_code, stdout, stderr = run.finish()
    finally:
        run.kill()
    assert code == 200 and status_code == 0, (body, stderr)
    for seen, rows in ((first, LINES), (stats, LINES + extra)):
        assert seen["state"] == "running"
        lines, out = row_of(seen, "lines"), row_of(seen, "out")
        for actor, kind in ((lines, "consumer"), (out, "producer")):
            assert (actor["type"], actor["mode"], actor["state"], actor["unit"]) == (kind, "process", "running", "rows")
            assert actor["pid"] in children and actor["pid"] != run.proc.pid
            assert actor["received"] == actor["emitted"] == actor["rows"] == rows, actor
            assert isinstance(actor["rate"], float) and actor["batches"] > 0
        assert {k: seen["totals"][k] for k in ("received", "staged", "emitted")} == {
            "received": rows, "staged": rows, "emitted": rows}
        assert {r["name"]: (r["rows_in"], r["rows_out"]) for r in seen["runners"]} == {
            "lines": (rows, rows), "out": (rows, rows)}
    assert row_of(stats, "lines")["batches"] > row_of(first, "lines")["batches"]
    total = f"{LINES + extra:,}"
    table = done.stdout.splitlines()
    assert done.returncode == 0 and table[2].split()[:6] == ["lines", "process", "running",
                                                             str(row_of(stats, "lines")["pid"]), total, total], table
    assert table[3].split()[:6] == ["out", "process", "running", str(row_of(stats, "out")["pid"]), total, total]
    assert table[4] == f"totals: 2 actors; in {total}, out {total}, restarts 0, dead letters 0"
    summary = summary_table(stdout)  # the run's final figures: what /stats said live, before the stop
    assert summary == {name: (row_of(stats, name)["rows"], row_of(stats, name)["batches"],
                              row_of(stats, name)["skipped"]) for name in ("lines", "out")}, stdout
    assert re.search(rf"^lines: rows in {total} = staged {total} \+ rejected 0 \+ late 0$", stdout, re.M), stdout
    assert len(csv_rows(tmp_path / "out")) == LINES + extra
    no_children_left()


@pytest.mark.timeout(90)
def test_chronopipe_status_prints_a_row_per_runner_and_a_totals_line(tmp_path):
    follow_project(tmp_path)
    run = Running(["run", "pipeline.yml", "--control", "127.0.0.1:0"], tmp_path)
    try:
        wait_until(lambda: row_of(get_json(run.url, "/stats"), "out")["emitted"] == LINES, 30)
        done = status(run.url)
        as_json = status(run.url, "--json")
        request(run.url, "POST", "/stop", {"timeout": 30}, token=run.token)
        assert run.finish()[0] == 0
    finally:
        run.kill()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run pipeline.yml (pid ") and ": running" in lines[0], lines
    assert lines[1].split() == ["actor", "mode", "state", "pid", "in", "out", "rate", "queue", "rss", "restarts",
                                "dead", "letters"]
    assert lines[2].split()[:6] == ["lines", "thread", "running", str(run.proc.pid), "8,144", "8,144"]
    assert lines[3].split()[:6] == ["out", "thread", "running", str(run.proc.pid), "8,144", "8,144"]
    assert lines[4] == "totals: 2 actors; in 8,144, out 8,144, restarts 0, dead letters 0"
    assert done.stderr == ""
    parsed = json.loads(as_json.stdout)
    assert parsed["info"]["kind"] == "run" and [a["name"] for a in parsed["stats"]["actors"]] == ["lines", "out"]
    no_children_left()


def _every_answer(run: Running) -> list[bytes]:
    """The bodies of every endpoint's answer (reads, a command, a refused push, a stop)."""
    bodies = []
    for path in ("/health", "/info", "/actors", "/stats", "/features", "/openapi.json", "/nosuch"):
        bodies.append(request(run.url, "GET", path)[1])
    for path, body in (("/commands", {"kind": "command", "type": "GET_INFO", "id": str(uuid.uuid4()),
                                      "timestamp": time.time(), "correlation_id": None, "data": {}}),
                       ("/commands", {"kind": "command", "type": "GET_STATS", "id": str(uuid.uuid4()),
                                      "timestamp": time.time(), "correlation_id": None, "data": {}}),
                       ("/push", {"input": "nosuch", "records": []})):
        bodies.append(request(run.url, "POST", path, body, token=run.token)[1])
        bodies.append(request(run.url, "POST", path, body, token="wrong-" + run.token)[1])  # refused
    bodies.append(request(run.url, "POST", "/stop", {"timeout": 30}, token="wrong-" + run.token)[1])
    return bodies


def _stop(run: Running) -> bytes:
    """POST /stop with the token: its answer's body (the run drains and ends)."""
    code, body = request(run.url, "POST", "/stop", {"timeout": 30}, token=run.token)
    assert code == 200, body
    return body


SECRETS = {"api_key": "Ak-7f3c-never-shown", "token": "Tk-51e9-never-shown"}


@pytest.mark.timeout(90)
def test_no_answer_and_no_status_output_holds_the_token_or_a_profile_secret(tmp_path):
    """Profile secrets (Secret fields of the profile a producer names) and the generated token
    appear in no response body, in no ``chronopipe status`` output, in nothing the run prints."""
    follow_project(tmp_path, options="    path: out\n    profile: vault\n",
                   profiles={"vault": {"user": "me", **SECRETS}})
    run = Running(["run", "pipeline.yml", "--profiles", "profiles.yml", "--control", "127.0.0.1:0"], tmp_path)
    try:
        wait_until(lambda: row_of(get_json(run.url, "/stats"), "out")["emitted"] == LINES, 30)
        token = run.token
        outputs = _every_answer(run)
        for args in ((run.url,), (run.url, "--json"), (run.url, "--token", "wrong")):
            done = status(*args)
            outputs += [done.stdout.encode(), done.stderr.encode()]
        outputs.append(_stop(run))
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    outputs += [out.encode(), err.encode()]
    assert any(b'"kind": "run"' in body for body in outputs)
    for secret in [token, *SECRETS.values()]:
        leaks = [body[:200] for body in outputs if secret.encode() in body]
        assert not leaks, f"{secret[:4]}... found in {leaks}"
    no_children_left()


@pytest.mark.timeout(120)
def test_a_postgres_run_shows_neither_the_token_nor_the_password_in_any_answer(tmp_path, postgres):  # noqa: F811
    table = f"t_{uuid.uuid4().hex[:12]}"
    follow_project(tmp_path, sink="postgres", options=f"    profile: warehouse\n    table: {table}\n",
                   profiles={"warehouse": {**postgres.profile_dict(), "api_key": SECRETS["api_key"]}})
    run = Running(["run", "pipeline.yml", "--profiles", "profiles.yml", "--control", "127.0.0.1:0"], tmp_path)
    try:
        wait_until(lambda: row_of(get_json(run.url, "/stats"), "out")["emitted"] == LINES, 60)
        token = run.token
        outputs = _every_answer(run)
        done = status(run.url)
        outputs += [done.stdout.encode(), done.stderr.encode()]
        outputs.append(_stop(run))
        code, out, err = run.finish()
    finally:
        run.kill()
    assert code == 0, err
    outputs += [out.encode(), err.encode()]
    with postgres.connect() as conn:
        assert conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == LINES
    for secret in (token, postgres.password, SECRETS["api_key"]):
        assert not [body[:200] for body in outputs if secret.encode() in body], secret[:4]
    no_children_left()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0"])
def test_control_off_loopback_without_a_token_is_exit_2_in_one_line_and_nothing_runs(tmp_path, address):
    follow_project(tmp_path)
    done = subprocess.run([CHRONOPIPE, "run", "pipeline.yml", "--control", address], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    host = address.rpartition(":")[0].strip("[]")
    assert done.stderr.splitlines() == [f"chronopipe run: --control: refusing to serve the control API on {host} "
                                        "(not loopback) without a token: set CHRONOPIPE_TOKEN"]
    assert done.stdout == ""
    assert not (tmp_path / "stage").exists() and not (tmp_path / "out").exists(), "nothing ran"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "127.0.0.1:"])
def test_a_control_address_that_does_not_parse_is_exit_2_in_one_line(tmp_path, address):
    follow_project(tmp_path)
    done = subprocess.run([CHRONOPIPE, "run", "pipeline.yml", "--control", address], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("chronopipe run: --control: control address"), lines
    assert not (tmp_path / "stage").exists()


@pytest.mark.timeout(60)
def test_a_taken_control_port_is_exit_2_in_one_line(tmp_path):
    import socket

    follow_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run([CHRONOPIPE, "run", "pipeline.yml", "--control", address], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"chronopipe run: --control: cannot serve the control API on {address}: "), lines
    assert not (tmp_path / "out").exists(), "no runner started"
    no_children_left()


# -- chronopipe status: its failures -----------------------------------------------------------
@pytest.mark.timeout(30)
def test_status_of_a_closed_port_is_unreachable_in_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    done = status(url)
    assert done.returncode == EXIT_UNREACHABLE == 4
    assert done.stderr.splitlines() == [f"chronopipe status: {url}: unreachable (connection refused)"]
    assert done.stdout == ""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("url", ["ftp://127.0.0.1:21", "http://127.0.0.1", "not a url"])
def test_status_of_something_not_an_http_host_and_port_is_exit_2(url, capsys):
    assert main(["status", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "give http://HOST:PORT" in err


class _NotOurs(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>hello</html>" if self.path == "/info" else b'{"x": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/info" else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.timeout(30)
def test_status_of_a_server_that_is_not_chronopipe_is_exit_6_in_one_line(capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotOurs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = main(["status", f"http://127.0.0.1:{server.server_address[1]}"])
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    assert code == EXIT_WRONG_SERVER == 6
    assert out == "" and len(err.splitlines()) == 1 and "not a chronopipe control API" in err, err


@pytest.mark.timeout(30)
def test_status_without_the_token_of_a_server_off_loopback_is_refused_exit_5(capsys, monkeypatch):
    from chronopipe.control import ActorsTarget, ControlServer

    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    token = "Tok-" + uuid.uuid4().hex
    with ControlServer(ActorsTarget("demo", cp.Runtime().actors), "0.0.0.0:0", token=token).start() as server:
        url = f"http://127.0.0.1:{server.port}"
        refused = [main(["status", url]), main(["status", url, "--token", "wrong"])]
        refused_err = capsys.readouterr().err
        monkeypatch.setenv("CHRONOPIPE_TOKEN", token)
        accepted = main(["status", url])
        out, err = capsys.readouterr()
    assert refused == [EXIT_REFUSED, EXIT_REFUSED] == [5, 5]
    lines = [line for line in refused_err.splitlines() if line.startswith("chronopipe status: ")]
    assert len(lines) == 2 and all("refused (401" in line and "--token or CHRONOPIPE_TOKEN" in line for line in lines)
    assert token not in refused_err
    assert accepted == 0, err
    assert out.startswith("runtime demo (pid ") and "totals: 0 actors" in out
    assert token not in out + err


# -- chronopipe validate --control -------------------------------------------------------------
@pytest.mark.timeout(60)
def test_validate_with_control_links_its_html_report_to_the_live_status(tmp_path):
    captures = sorted(str(p) for p in CAPTURES.glob("ssh.*.pcap"))
    run = Running(["validate", *captures, "--control", "127.0.0.1:0", "--html", "r.html", "--check-processes", "0"],
                  tmp_path)
    try:
        code, _, err = run.finish()
    finally:
        run.kill()
    assert code in (0, 1), err
    page = (tmp_path / "r.html").read_text()
    assert f'live status: <a href="{run.url}/stats">{run.url}/stats</a>' in page
    assert "Traceback" not in err
    port = int(run.url.rsplit(":", 1)[1])
    assert not [c for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                and c.status == psutil.CONN_LISTEN], "the server went with the run"
    no_children_left()


@pytest.mark.timeout(60)
def test_validate_without_control_writes_the_same_report_as_before(tmp_path, capsys):
    captures = sorted(str(p) for p in CAPTURES.glob("ssh.*.pcap"))
    assert main(["validate", *captures, "--html", str(tmp_path / "r.html"), "--check-processes", "0"]) in (0, 1)
    page = (tmp_path / "r.html").read_text()
    assert "live status" not in page and "live-status" not in page
    assert "control API" not in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_validate_with_control_off_loopback_without_a_token_is_exit_2_before_anything_runs(tmp_path, capsys,
                                                                                           monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    captures = sorted(str(p) for p in CAPTURES.glob("ssh.*.pcap"))
    assert main(["validate", *captures, "--control", "0.0.0.0:0", "--html", str(tmp_path / "r.html")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["chronopipe validate: --control: refusing to serve the control API "
                                              "on 0.0.0.0 (not loopback) without a token: set CHRONOPIPE_TOKEN"]
    assert not (tmp_path / "r.html").exists()


def _udp_capture(path: Path, packets: int) -> Path:
    """A pcap of ``packets`` small UDP packets, 1 ms apart."""
    import struct

    from chronopipe.capture import CaptureWriter

    udp = struct.pack("!HHHH", 4000, 5000, 28, 0) + b"x" * 20
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    frame = bytes(11) + b"\x01" + b"\x08\x00" + ip + udp
    with CaptureWriter(path) as out:
        for i in range(packets):
            out.write((1_700_000_000_000_000_000 + i * 1_000_000, path.name, 0, i + 1, len(frame), len(frame), 1,
                       frame))
    return path


@pytest.mark.timeout(90)
def test_post_stop_ends_a_validation_run_early_with_a_report_of_what_was_read(tmp_path):
    capture = _udp_capture(tmp_path / "big.pcap", 1_000_000)  # some seconds of checks
    run = Running(["validate", "big.pcap", "--control", "127.0.0.1:0", "--json", "r.json", "--check-processes", "0"],
                  tmp_path)
    try:
        info = get_json(run.url, "/info")
        assert (info["kind"], info["captures"]) == ("validate", ["big.pcap"])
        wait_until(lambda: any(a["emitted"] for a in get_json(run.url, "/stats")["actors"]), 30)  # it reads
        code, body = request(run.url, "POST", "/stop", {"timeout": 30}, token=run.token)
        status_code, _, err = run.finish()
    finally:
        run.kill()
    assert code == 200 and json.loads(body)["answer"]["state"] == "finished", body
    assert status_code in (0, 1), err
    assert "chronopipe validate: stopped through the control API: the report covers the packets read before " \
           "the stop" in err.splitlines()
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0 < report["packets"] < 1_000_000 and report["files"][0]["complete"] is False
    assert capture.exists()
    no_children_left()


# -- RunTarget, in this process ----------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_run_target_lists_every_profile_secret_and_answers_with_none_of_them(tmp_path):
    from chronopipe.runs.config import load_config
    from chronopipe.runs.control import RunTarget
    from chronopipe.runs.engine import Run
    from chronopipe.runs.profiles import Profile
    from chronopipe.runs.varieties import accepted_options

    secrets = ["Pw-3c1a-never-shown", "Tk-93be-never-shown", "postgresql://me:Pw-3c1a-never-shown@db/x"]
    profile = Profile(name="vault", fields={"user": "me", "password": secrets[0], "db_token": secrets[1],
                                            "dsn": secrets[2], "host": "db"})
    follow_project(tmp_path, options="    path: out\n    profile: vault\n")
    config = load_config(tmp_path / "pipeline.yml", accepted_options=accepted_options)
    run = Run(config, {"vault": profile}, base=tmp_path)
    target = RunTarget(run, "pipeline.yml")
    assert sorted(target.secrets()) == sorted(secrets)
    try:
        run.start()
        wait_until(lambda: target.stats()["totals"]["emitted"] == LINES, 30)
        answers = [target.info(), target.actors(), target.stats(), target.stop(30)]
    finally:
        run.cancel()
        run.close()
    text = json.dumps(answers)
    assert not [s for s in secrets if s in text], "an answer holds a secret before any scrub"
    assert answers[-1]["state"] == "finished" and answers[-1]["totals"]["received"] == LINES
    assert answers[0]["runners"][1] == {"name": "out", "type": "producer", "variety": "csv", "mode": "thread",
                                        "state": "running", "depends_on": ["lines"]}
