"""The control API refuses what it must: a real server on 127.0.0.1 in each test, over real actors."""

from __future__ import annotations

import hmac
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from chronopipe.control import ControlError, ControlServer, open_control
from control_helper import Recorded, call, idle_actors

TOKEN = "a-good-token-of-the-test-0123456789"


@pytest.fixture
def served(monkeypatch):
    """Two running thread actors, and a server over them with the token TOKEN."""
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    actors, _ = idle_actors()
    target = Recorded()
    with open_control(target, token=TOKEN) as server:
        yield server, target, actors


def running(actors) -> bool:
    return all(a.state == "running" for a in actors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_post_without_a_token_is_refused_and_not_acted_on(served):
    server, _, actors = served
    status, headers, answer = call(server.url, "POST", "/stop", body={"timeout": 0})
    assert (status, answer) == (401, {"error": "needs the header Authorization: Bearer <token>"})
    assert headers["www-authenticate"].startswith("Bearer")
    assert running(actors)


def test_a_wrong_token_is_refused_and_not_acted_on(served):
    server, _, actors = served
    for wrong in (TOKEN[:-1] + "x", TOKEN + "x", TOKEN[:-1], "", "Bearer"):
        assert call(server.url, "POST", "/stop", token=wrong, body={})[0] == 401
    assert call(server.url, "POST", "/stop", body={}, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
    assert running(actors)


def test_the_token_is_compared_with_hmac_compare_digest(served, monkeypatch):
    server, _, _ = served
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert call(server.url, "POST", "/stop", token="not-it", body={"timeout": 0})[0] == 401
    assert call(server.url, "POST", "/push", token=TOKEN, body={"input": "x", "records": []})[0] == 404
    assert compared == [(b"not-it", TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_a_good_token_on_a_verb_a_path_does_not_take_is_405_and_never_acted_on(served):
    server, target, actors = served
    status, headers, answer = call(server.url, "GET", "/kill", token=TOKEN)
    assert (status, answer, headers["allow"]) == (405, {"error": "GET is not allowed here"}, "POST")
    for method, path in (("DELETE", "/stats"), ("DELETE", "/stop"), ("PUT", "/kill"), ("PATCH", "/push")):
        status, headers, _ = call(server.url, method, path, token=TOKEN)
        assert status == 405, (method, path)
        assert headers["allow"]
    assert target.kills == 0
    assert running(actors)


def test_a_delete_without_a_token_is_refused_before_anything_else(served):
    server, _, _ = served
    assert call(server.url, "DELETE", "/stats")[0] == 401


def test_a_foreign_host_is_refused_even_with_the_token(served):
    server, _, actors = served
    port = server.address[1]
    for host in ("example.com", f"example.com:{port}", f"127.0.0.1:{port + 1}", f"localhost.evil:{port}"):
        status, _, answer = call(server.url, "GET", "/stats", headers={"Host": host})
        assert status == 403, host
        assert "Host" in answer["error"]
    assert call(server.url, "POST", "/stop", token=TOKEN, body={}, headers={"Host": "example.com"})[0] == 403
    assert running(actors)


def test_a_dns_rebinding_host_naming_the_servers_port_is_refused(served):
    server, target, _ = served
    rebound = f"evil.example:{server.address[1]}"
    assert call(server.url, "GET", "/info", headers={"Host": rebound})[0] == 403
    assert call(server.url, "POST", "/kill", token=TOKEN, body={}, headers={"Host": rebound})[0] == 403
    assert target.kills == 0


def test_the_servers_own_names_are_accepted_as_host(served):
    server, _, _ = served
    port = server.address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert call(server.url, "GET", "/health", headers={"Host": host})[0] == 200, host


def test_a_request_without_a_host_header_is_refused(served):
    server, _, _ = served
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        reply = s.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.0 403") or reply.startswith(b"HTTP/1.1 403")


def test_a_foreign_origin_is_refused_even_with_the_token(served):
    server, _, actors = served
    for origin in ("http://evil.example", "https://127.0.0.1", "null", f"http://evil.example:{server.address[1]}"):
        status, _, answer = call(server.url, "POST", "/stop", token=TOKEN, body={}, headers={"Origin": origin})
        assert (status, answer) == (403, {"error": "this Origin is not allowed"}), origin
    assert call(server.url, "GET", "/stats", headers={"Origin": "http://evil.example"})[0] == 403
    assert running(actors)


def test_the_servers_own_origin_is_accepted(served):
    server, _, _ = served
    assert call(server.url, "GET", "/stats", headers={"Origin": server.url})[0] == 200


def test_a_body_of_blanks_is_not_json_and_not_acted_on(served):
    server, _, actors = served
    status, _, answer = call(server.url, "POST", "/stop", token=TOKEN, body=b" ",
                             headers={"Content-Type": "application/json"})
    assert status == 400 and answer["error"].startswith("the body is not JSON")
    assert running(actors)


def test_an_oversized_body_is_413_and_not_acted_on(served):
    server, _, actors = served
    big = {"input": "x", "records": ["y" * 1000] * 70}
    status, _, answer = call(server.url, "POST", "/push", token=TOKEN, body=big)
    assert (status, answer) == (413, {"error": "the body is over 65536 bytes"})
    status, _, _ = call(server.url, "POST", "/stop", token=TOKEN, body=b"{" + b" " * 70_000 + b"}",
                        headers={"Content-Type": "application/json"})
    assert status == 413
    assert running(actors)


def test_a_chunked_body_over_the_cap_is_413(served):
    server, _, _ = served
    head = (f"POST /push HTTP/1.1\r\nHost: 127.0.0.1:{server.address[1]}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunk = b" " * 8192
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(head + b"1\r\n{\r\n")
        try:
            for _ in range(10):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            s.sendall(b"1\r\n}\r\n0\r\n\r\n")
        except OSError:  # the server may answer and close before it has read it all
            pass
        reply = s.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.1 413")


def test_a_body_that_is_not_json_is_400(served):
    server, _, actors = served
    for body in (b"{", b"stop", b'{"timeout": NaN}', b"\xff\xfe"):
        status, _, answer = call(server.url, "POST", "/stop", token=TOKEN, body=body,
                                 headers={"Content-Type": "application/json"})
        assert status == 400, body
        assert answer["error"].startswith("the body is not JSON")
    assert call(server.url, "POST", "/stop", token=TOKEN, body=[1, 2])[2] == {
        "error": "the body must be a JSON object, not list"}
    assert running(actors)


def test_a_body_that_is_not_application_json_is_415(served):
    server, _, actors = served
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _, answer = call(server.url, "POST", "/stop", token=TOKEN, body=b'{"timeout": 0}',
                                 headers={"Content-Type": kind})
        assert status == 415, kind
        assert answer["error"].startswith("the body must be application/json")
    assert running(actors)


def test_a_non_loopback_bind_without_a_token_is_refused_and_nothing_listens(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    port = free_port()
    server = ControlServer(Recorded(), f"0.0.0.0:{port}")
    with pytest.raises(ControlError, match="not loopback"):
        server.start()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert server.token_file is None


def test_a_non_loopback_bind_with_a_token_needs_it_for_reads_too(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    with open_control(Recorded(), "0.0.0.0:0", token=TOKEN) as server:
        local = f"http://127.0.0.1:{server.address[1]}"
        assert call(local, "GET", "/stats")[0] == 401
        assert call(local, "GET", "/stats", token=TOKEN)[0] == 200
        assert server.token_file is None


def test_a_generated_token_is_written_mode_0600_and_removed_at_close(tmp_path, monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    server = open_control(Recorded())
    try:
        path = server.token_file
        assert path == tmp_path / "chronopipe" / f"control-{os.getpid()}-{server.address[1]}.token"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == server.token
        assert call(server.url, "POST", "/stop", token=path.read_text().strip(), body={"timeout": 0})[0] == 200
    finally:
        server.close()
    assert not path.exists()


def test_the_token_comes_from_chronopipe_token_and_no_file_is_written(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("CHRONOPIPE_TOKEN", TOKEN)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with open_control(Recorded()) as server:
        assert (server.token, server.token_file) == (TOKEN, None)
        assert call(server.url, "POST", "/stop", token=TOKEN, body={"timeout": 0})[0] == 200
    assert not (tmp_path / "chronopipe").exists()
    assert capfd.readouterr().err == f"chronopipe: control API on {server.url} (token from CHRONOPIPE_TOKEN)\n"


def test_the_start_line_says_where_the_token_file_is(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with open_control(Recorded()) as server:
        line = f"chronopipe: control API on {server.url} (token in {server.token_file})\n"
    assert capfd.readouterr().err == line


def test_a_host_given_in_allowed_hosts_is_accepted(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    with open_control(Recorded(), allowed_hosts=["pipeline.internal"]) as server:
        port = server.address[1]
        assert call(server.url, "GET", "/health", headers={"Host": f"pipeline.internal:{port}"})[0] == 200
        assert call(server.url, "GET", "/health", headers={"Origin": f"http://pipeline.internal:{port}"})[0] == 200
        assert call(server.url, "GET", "/health", headers={"Host": f"other.internal:{port}"})[0] == 403


def test_a_target_error_is_logged_scrubbed_of_its_secrets_and_the_token(caplog):
    from control_helper import SECRET

    class Leaky(Recorded):
        def stats(self):
            raise RuntimeError(f"cannot reach postgres://u:{SECRET}@db with {TOKEN}")

    with caplog.at_level("DEBUG", logger="chronopipe.control"), open_control(Leaky(), token=TOKEN) as server:
        status, _, answer = call(server.url, "GET", "/stats")
    assert (status, answer) == (500, {"error": "RuntimeError: cannot reach postgres://u:***@db with ***"})
    assert "cannot reach postgres://u:***@db with ***" in caplog.text
    assert SECRET not in caplog.text and TOKEN not in caplog.text


@pytest.mark.parametrize("body", [b'{"input": "orders", "records": [1e999]}',
                                  b'{"input": "orders", "records": [-1e999]}',
                                  b'{"input": "orders", "records": [{"a": 1E400}]}'])
def test_a_number_too_large_for_a_float_is_400_and_not_taken(served, body):
    server, target, _ = served
    status, _, answer = call(server.url, "POST", "/push", token=TOKEN, body=body,
                             headers={"Content-Type": "application/json"})
    assert status == 400 and answer["error"].startswith("the body is not JSON") and "too large" in answer["error"]
    assert target.pushed == []


@pytest.mark.parametrize("body", [b'{"type": "GET_STATS", "type": "KILL"}',
                                  b'{"type": "PUSH", "data": {"input": "nope", "input": "orders", "records": [1]}}',
                                  b'{"type": "PUSH", "data": {"input": "orders", "records": [{"a": 1, "a": 2}]}}'])
def test_a_body_with_a_duplicate_key_at_any_depth_is_400_and_not_acted_on(served, body):
    server, target, _ = served
    status, _, answer = call(server.url, "POST", "/commands", token=TOKEN, body=body,
                             headers={"Content-Type": "application/json"})
    assert (status, answer["error"].startswith("the body is not JSON: duplicate key")) == (400, True)
    assert (target.kills, target.pushed) == (0, [])


def _bad_folder(tmp_path, how):
    runtime = tmp_path / "run"
    runtime.mkdir()
    folder = runtime / "chronopipe"
    if how == "0777":
        folder.mkdir()
        folder.chmod(0o777)
    else:  # a symlink to a folder of the right mode
        real = tmp_path / "elsewhere"
        real.mkdir(mode=0o700)
        folder.symlink_to(real)
    return runtime


@pytest.mark.parametrize("how", ["0777", "symlink"])
def test_an_unsafe_token_folder_is_not_used_the_next_one_is(tmp_path, monkeypatch, how):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_bad_folder(tmp_path, how)))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with open_control(Recorded()) as server:
        folder = server.token_file.parent
        assert folder == tmp_path / "home" / ".cache" / "chronopipe"
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
        if how == "symlink":
            assert not any((tmp_path / "elsewhere").iterdir())


def test_no_safe_token_folder_is_a_control_error_of_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(_bad_folder(tmp_path, "0777")))
    home = tmp_path / "home"
    (home / ".cache" / "chronopipe").mkdir(parents=True)
    (home / ".cache" / "chronopipe").chmod(0o757)
    monkeypatch.setenv("HOME", str(home))
    port = free_port()
    with pytest.raises(ControlError, match="no safe folder for the control token") as caught:
        ControlServer(Recorded(), f"127.0.0.1:{port}").start()
    assert "\n" not in str(caught.value) and "writable by others" in str(caught.value)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.parametrize("token", ["two words", "line\nbreak", "carriage\rreturn", "caf\u00e9-token", "tab\there", " "])
def test_a_token_a_client_cannot_send_as_a_header_is_refused_at_construction(monkeypatch, token):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    with pytest.raises(ControlError, match="printable ASCII without spaces"):
        ControlServer(Recorded(), token=token)
    monkeypatch.setenv("CHRONOPIPE_TOKEN", token)
    with pytest.raises(ControlError, match="from CHRONOPIPE_TOKEN"):
        ControlServer(Recorded())


def test_an_empty_chronopipe_token_is_no_token_a_new_one_is_generated(monkeypatch, tmp_path):
    monkeypatch.setenv("CHRONOPIPE_TOKEN", "")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with ControlServer(Recorded()) as server:
        assert server.token and server.token_file is not None and server.token_file.exists()


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_command_whose_chronopipe_token_cannot_be_sent_is_exit_2_in_one_line(tmp_path, command):
    root = Path(__file__).resolve().parents[1]
    given = {"run": [str(root / "examples/runs/uci_to_postgres.yml")],
             "validate": [str(root / "tests/data/captures/dups/ssh-dups.pcap")]}[command]
    done = subprocess.run([str(root / "venv/bin/chronopipe"), command, *given, "--control", "127.0.0.1:0"],
                          cwd=tmp_path, env={**os.environ, "CHRONOPIPE_TOKEN": "line\nbreak"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"chronopipe {command}: --control: the control token must be printable "
                                        "ASCII without spaces (characters 33 to 126)"]
    assert list(tmp_path.iterdir()) == []
