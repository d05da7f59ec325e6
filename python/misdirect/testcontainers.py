"""misdirect in a container, on testcontainers-python (`pip install 'misdirect[testcontainers]'`):

    from misdirect.testcontainers import MisdirectContainer

    with MisdirectContainer("scenario.json") as m:          # or bundled:ID, or a dict
        with m.resolve():
            httpx.Client(http2=True, verify=m.ssl_context()).get(m.url("b.test"))
        assert m.verdict().passed

The image is `misdirect:local` by default (built by the project's `scripts/docker-build`, or
`docker build -t misdirect:local .`); nothing is pulled if it is there. The scenario is
copied into the container (no bind mount, so a remote Docker engine works too), each
listener's port and the control API's are mapped to free ports of the Docker host, and it is
ready when Docker's health check (`misdirect health`) says healthy. testcontainers' reaper
(Ryuk) is an image of its own: where no registry is reachable, set
TESTCONTAINERS_RYUK_DISABLED=true.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

try:
    from testcontainers.core.container import DockerContainer
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "misdirect.testcontainers needs testcontainers-python 4.15 or later: pip install 'misdirect[testcontainers]'"
    ) from error

from ._errors import MisdirectError
from ._harness import Endpoint, Scenario, _describe, _names_of, _scenario_text, _url_host

BASE_PORT = 8443
"""The image gives its listeners 8443, 8444, … in the scenario's order."""
CONTROL_PORT = 9000
"""The image's control API."""


class MisdirectContainer(DockerContainer, Endpoint):
    """The misdirect image serving one scenario, with the same API as `misdirect.Harness`."""

    def __init__(
        self,
        scenario: Scenario,
        image: str = "misdirect:local",
        startup_timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        self._label = _describe(scenario)
        try:
            super().__init__(image, **kwargs)
        except Exception as error:  # testcontainers connects to the engine here
            raise MisdirectError(f"{self._label}: the container could not start: {error}") from None
        text = _scenario_text(scenario, None)
        try:
            parsed = json.loads(text)
        except ValueError as error:
            raise MisdirectError(f"{self._label}: not JSON: {error}") from None
        self._listener_ports = sorted(set(container_ports(parsed).values()))
        self._startup_timeout = startup_timeout
        self._names = {}
        self._control = ""
        self._ca_file: Path | None = None
        self.with_exposed_ports(*self._listener_ports, CONTROL_PORT)
        self.with_copy_into_container(text.encode(), "/scenario.json")
        self.with_command(["serve", "/scenario.json"])

    def start(self) -> "MisdirectContainer":
        try:
            return self._start()
        except BaseException:
            # Nothing is left running, whatever failed (or Ctrl-C): no reaper may be there.
            self.stop()
            raise

    def stop(self, force: bool = True, delete_volume: bool = True) -> None:
        """Removes the container (once) and the CA file fetched from it."""
        if self._container is not None:
            try:
                super().stop(force=force, delete_volume=delete_volume)
            finally:
                self._container = None
        if self._ca_file is not None:
            shutil.rmtree(self._ca_file.parent, ignore_errors=True)
            self._ca_file = None

    def _start(self) -> "MisdirectContainer":
        try:
            super().start()
        except Exception as error:  # the engine's own words: no engine, no image…
            raise MisdirectError(f"{self._label}: the container could not start: {error}") from None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            container = self.get_wrapped_container()
            container.reload()
            state = container.attrs.get("State", {})
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy":
                break
            if state.get("Status") in ("exited", "dead") or health == "unhealthy" or time.monotonic() > deadline:
                logs = b"\n".join(part for part in self.get_logs() if part).decode(errors="replace")
                why = "exited" if state.get("Status") in ("exited", "dead") else f"not healthy ({health})"
                raise MisdirectError(f"{self._label}: the misdirect container is {why}:\n{logs[-8000:]}")
            time.sleep(0.1)
        host = self.get_container_host_ip()
        self._control = f"http://{_url_host(host)}:{self.get_exposed_port(CONTROL_PORT)}"
        self._refresh_names()
        return self

    def _refresh_names(self) -> None:
        ready = self._json("GET", "/ready")
        try:
            host = socket.getaddrinfo(self.get_container_host_ip(), None, type=socket.SOCK_STREAM)[0][4][0]
            names = _names_of(ready, lambda _bound, inside: (host, int(self.get_exposed_port(inside))))
        except Exception as error:  # a port not mapped, a host that does not resolve
            raise MisdirectError(f"{self._label}: where the container's names are: {error}") from None
        self._names = names

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM), fetched from the control API's /ca.pem once."""
        if self._ca_file is None:
            pem = self._call("GET", "/ca.pem")
            folder = Path(tempfile.mkdtemp(prefix="misdirect-ca-"))
            self._ca_file = folder / "ca.pem"
            self._ca_file.write_bytes(pem)
        return self._ca_file

    def __enter__(self) -> "MisdirectContainer":
        return self.start()


def container_ports(scenario: Mapping[str, Any]) -> dict[str, int]:
    """Each listener's port inside the container, as `misdirect serve` binds them with
    MISDIRECT_BASE_PORT: its own port if it has one, that of the listener its `port_from`
    names, else the next base port (8443, 8444, …)."""
    listeners = scenario.get("listeners") or [{"name": "main"}]
    ports: dict[str, int] = {}
    following = BASE_PORT
    for listener in listeners:
        name = str(listener.get("name", "main"))
        own = int(str(listener.get("address", "127.0.0.1:0")).rpartition(":")[2] or 0)
        source = listener.get("port_from")
        if source in ports:
            ports[name] = ports[source]
        elif own:
            ports[name] = own
        else:
            ports[name] = following
            following += 1
    return ports
