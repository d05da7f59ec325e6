"""misdirect.testcontainers against the locally built image (misdirect:local, from the
project's scripts/docker-build): nothing is pulled, and testcontainers' reaper is off
(TESTCONTAINERS_RYUK_DISABLED=true, set here before testcontainers is imported). Skipped
without a Docker engine or the image, unless MISDIRECT_REQUIRE_TOOLS=1."""

import os

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import httpx  # noqa: E402
import pytest  # noqa: E402

from misdirect import MisdirectError  # noqa: E402

IMAGE = os.environ.get("MISDIRECT_IMAGE", "misdirect:local")


def _image_ready():
    try:
        import docker

        docker.from_env(timeout=10).images.get(IMAGE)
        return None
    except Exception as error:  # no engine, no image: say which
        return f"{IMAGE} is not available: {error}"


_why = _image_ready()
if _why and os.environ.get("MISDIRECT_REQUIRE_TOOLS") == "1":
    raise RuntimeError(f"MISDIRECT_REQUIRE_TOOLS=1: {_why}")
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

from misdirect.testcontainers import MisdirectContainer, container_ports  # noqa: E402


def test_the_container_serves_the_scenarios_names_on_mapped_ports_and_judges():
    with MisdirectContainer("bundled:coalescing-wrong-server", image=IMAGE) as m:
        assert set(m.addresses) == {"a.test", "b.test"}
        assert m.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
        with m.resolve(), httpx.Client(http2=True, verify=m.ssl_context()) as client:
            assert client.get(m.url("a.test")).status_code == 200
            # httpx does not coalesce b.test onto a.test's connection: nothing to misdirect.
            assert client.get(m.url("b.test", "/style.css")).status_code == 200
        verdict = m.verdict()
        assert {c.expectation: c.status for c in verdict.checks} == {
            "retried_on_new_connection (b.test)": "not_exercised",
            "no_retry_on_same_connection": "not_exercised",
            "stopped_coalescing (b.test)": "not_exercised",
            "max_attempts 2": "pass",
        }, verdict.table
        assert m.verdict(allow_not_exercised=True).passed
        assert [(r["sni"], r["authority"]) for r in m.requests()] == [("a.test", "a.test"), ("b.test", "b.test")]


def test_an_invalid_scenario_makes_the_container_fail_with_its_message():
    bad = {"hosts": [{"names": ["a.test"], "certificate": "nope"}]}
    with pytest.raises(MisdirectError, match="nope"):
        MisdirectContainer(bad, image=IMAGE, startup_timeout=30).start()


def test_no_docker_engine_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(MisdirectError, match="could not start"):
        MisdirectContainer("bundled:coalescing-wrong-server", image=IMAGE).start()


def test_listeners_get_base_ports_in_order_their_own_ports_or_their_sources():
    scenario = {
        "listeners": [
            {"name": "a", "address": "127.0.0.1:0"},
            {"name": "fixed", "address": "127.0.0.1:9443"},
            {"name": "b", "address": "127.0.0.1:0"},
            {"name": "b2", "address": "127.0.0.2:0", "port_from": "b"},
        ]
    }
    assert container_ports(scenario) == {"a": 8443, "fixed": 9443, "b": 8444, "b2": 8444}
    assert container_ports({}) == {"main": 8443}


def test_a_listener_with_its_own_port_is_mapped_too():
    scenario = {
        "listeners": [{"name": "fixed", "address": "127.0.0.1:9443"}],
        "certificates": [{"name": "shared", "sans": ["a.test"]}],
        "hosts": [{"names": ["a.test"], "certificate": "shared"}],
    }
    with MisdirectContainer(scenario, image=IMAGE) as m:
        with m.resolve(), httpx.Client(http2=True, verify=m.ssl_context()) as client:
            assert client.get(m.url("a.test")).status_code == 200
