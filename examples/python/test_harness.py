"""The Python API itself: what a test gets, between test cases, and clear errors (never a
hang) for what cannot work."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from misdirect import Harness, MisdirectError, find_binary

HOSTS = {
    "name": "two-hosts",
    "certificates": [{"name": "shared", "sans": ["a.test", "b.test"]}],
    "hosts": [{"names": ["a.test"], "certificate": "shared"}, {"names": ["b.test"], "certificate": "shared"}],
    "expect": [{"requests": 1}],
}


def test_the_wheel_carries_the_command():
    done = subprocess.run([str(find_binary()), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("misdirect "), done


def test_a_dict_scenario_names_urls_ca_and_the_journal(misdirect):
    h = misdirect(HOSTS)
    assert set(h.addresses) == {"a.test", "b.test"}
    assert h.url("b.test", "x") == f"https://b.test:{h.port()}/x"
    assert h.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with h.resolve():
        assert socket.getaddrinfo("a.test", 443)[0][4][0] == "127.0.0.1"
        with httpx.Client(http2=True, verify=h.ssl_context()) as client:
            assert client.get(h.url("a.test")).status_code == 200
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("a.test", 443)  # the mapping ends with the block
    requests = h.requests()
    assert [(r["authority"], r["status"], r["protocol"]) for r in requests] == [("a.test", 200, "h2")]
    assert h.verdict().passed
    # Between test cases: a reset starts the journal and the counters over.
    h.reset()
    assert h.requests() == []
    assert not h.verdict().passed  # requests = 1 now sees none
    assert "<svg" in h.report_html()


def test_load_puts_another_scenario_in_force_and_names_follow(misdirect):
    h = misdirect(HOSTS)
    with_c = json.loads(json.dumps(HOSTS))
    with_c["certificates"][0]["sans"].append("c.test")
    with_c["hosts"].append({"names": ["c.test"], "certificate": "shared"})
    h.load(with_c)
    assert "c.test" in h.addresses
    with pytest.raises(MisdirectError, match="listeners"):
        h.load({**with_c, "listeners": [{"name": "other", "address": "127.0.0.1:0"}]})


def test_an_invalid_scenario_is_an_error_naming_the_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hosts": [{"names": ["a.test"], "certificate": "nope"}]}))
    with pytest.raises(MisdirectError) as error:
        Harness(bad, startup_timeout=10).start()
    message = str(error.value)
    assert str(bad) in message and "nope" in message and "exited with" in message, message


def test_a_port_in_use_is_an_error_with_the_servers_words(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        scenario = {**HOSTS, "listeners": [{"name": "main", "address": f"127.0.0.1:{port}"}]}
        with pytest.raises(MisdirectError, match=f"127.0.0.1:{port}"):
            Harness(scenario, startup_timeout=10).start()
    finally:
        taken.close()


def test_a_missing_file_and_an_unknown_name_are_errors(misdirect, tmp_path):
    with pytest.raises(MisdirectError, match="no such scenario file"):
        Harness(tmp_path / "missing.json").start()
    with pytest.raises(MisdirectError, match="no bundled scenario"):
        Harness("bundled:no-such-scenario").start()
    h = misdirect(HOSTS)
    with pytest.raises(MisdirectError, match="serves no name 'z.test'"):
        h.url("z.test")


def test_many_harnesses_at_once_each_have_their_own_ports_and_ca(misdirect):
    harnesses = [misdirect("bundled:coalescing-wrong-server") for _ in range(6)]
    assert len({h.port() for h in harnesses}) == 6
    assert len({h.ca_file.read_text() for h in harnesses}) == 6


def test_a_refused_load_says_why(misdirect):
    h = misdirect(HOSTS)
    broken = {**HOSTS, "hosts": [{"names": ["a.test"], "certificate": "nope"}]}
    with pytest.raises(MisdirectError, match="400: invalid scenario: .*nope"):
        h.load(broken)


def test_the_users_misdirect_variables_do_not_reach_the_server(misdirect, monkeypatch):
    monkeypatch.setenv("MISDIRECT_CONTROL_TOKEN", "secret")
    monkeypatch.setenv("MISDIRECT_REUSE_CA", "/nonexistent")
    monkeypatch.setenv("MISDIRECT_CONTROL", "0.0.0.0:9000")
    h = misdirect(HOSTS)
    assert h.control.startswith("http://127.0.0.1:") and not h.control.endswith(":9000")
    assert h.journal()  # no token asked


def test_resolve_calls_through_to_the_getaddrinfo_it_found(misdirect, monkeypatch):
    seen = []
    real = socket.getaddrinfo

    def recording(host, *args, **kwargs):
        seen.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    h = misdirect(HOSTS)
    with h.resolve():
        socket.getaddrinfo("a.test", 443)
        socket.getaddrinfo("localhost", 443)
    assert socket.getaddrinfo is recording
    assert seen == ["127.0.0.1", "localhost"]


def test_a_server_that_died_is_named_as_such(misdirect):
    h = misdirect(HOSTS)
    os.kill(h.ready["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while h.running and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(MisdirectError, match="misdirect serve exited with -9"):
        h.verdict()


def test_the_server_ends_with_the_process_that_started_it(tmp_path):
    """However the test process ends (SIGKILL included), its servers do not outlive it."""
    script = (
        "import misdirect, sys, time\n"
        "h = misdirect.Harness('bundled:coalescing-wrong-server').start()\n"
        "print(h.ready['pid'], flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        server = int(child.stdout.readline())
        os.kill(server, 0)  # running
        child.kill()
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(server, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(server, signal.SIGKILL)
            pytest.fail(f"misdirect serve (pid {server}) outlived the process that started it")
    finally:
        if child.poll() is None:
            child.kill()
