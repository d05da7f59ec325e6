"""`Harness`: one `misdirect serve` for a test, and what a test needs of it — URLs with the
scenario's names, the CA, a name mapping for `socket.getaddrinfo`, the journal, the verdict."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

from ._binary import bundled, find_binary
from ._errors import MisdirectError

Scenario = Union[str, "os.PathLike[str]", Mapping[str, Any]]
"""A scenario file, `bundled:ID` for a bundled scenario, or the scenario itself as a dict."""

# The server's MISDIRECT_* variables are the harness's to set: one left in the user's
# environment could share ports or files between parallel servers, bind beyond loopback,
# or lock the control API (a token). These few are kept.
_KEPT_VARIABLES = ("MISDIRECT_ALLOW_FILES_OUTSIDE", "MISDIRECT_LOG_FORMAT")

# Every wait on the server is bounded.
_REQUEST_TIMEOUT = 10.0

# No proxy: the control API is on loopback (or a mapped port of a local container).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Check:
    """One expectation of a verdict."""

    expectation: str
    status: str
    """`pass`, `fail` or `not_exercised`."""
    level: str
    """`must`, `should` or `robust`."""
    explanation: str
    evidence: list[int] = field(default_factory=list)
    """The journal's sequence numbers that show it."""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class Verdict:
    """What the journal says of the client: `passed`, every check, and the table `misdirect
    run` prints. Falsy when it did not pass, and its repr is the table, so that a bare
    `assert h.verdict()` fails with the reasons."""

    passed: bool
    checks: list[Check]
    table: str

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return "\n" + self.table

    @property
    def failed(self) -> list[Check]:
        """The checks that did not pass (failed or not exercised)."""
        return [c for c in self.checks if not c.passed]

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> "Verdict":
        checks = [
            Check(
                expectation=str(c.get("expectation", "")),
                status=str(c.get("status", "")),
                level=str(c.get("level", "")),
                explanation=str(c.get("explanation", "")),
                evidence=[int(s) for s in c.get("evidence", [])],
            )
            for c in value.get("checks", [])
        ]
        return cls(passed=bool(value.get("passed")), checks=checks, table=str(value.get("table", "")))


# The endpoints whose names are mapped now, innermost last, shared by every harness of the
# process: one patch of socket.getaddrinfo serves them all, and calls through to the
# getaddrinfo that was there before it (a test's own patch included).
_mapped: list["Endpoint"] = []
_mapped_lock = threading.Lock()
_previous_getaddrinfo: Any = None


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str):
        key = name.lower().rstrip(".")
        for endpoint in reversed(_mapped):
            where = endpoint._names.get(key)
            if where is not None:
                return _previous_getaddrinfo(where[0], port, *args, **kwargs)
    return _previous_getaddrinfo(host, port, *args, **kwargs)


class Endpoint:
    """What a running misdirect offers a test, wherever it runs (a local process or a
    container): subclasses give the control API's URL, the CA and where each name is."""

    _control: str
    _names: dict[str, tuple[str, int, bool]]  # name -> (host to connect to, port, tls)
    _label: str
    _binary: Path | None = None

    # -- names ------------------------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, str]:
        """Each name of the scenario → `host:port` to connect to (keep the name for SNI and
        `Host`: see `resolve()`)."""
        return {n: f"{_url_host(h)}:{p}" for n, (h, p, _) in self._names.items()}

    def url(self, name: str, path: str = "/") -> str:
        """`https://NAME:PORT/PATH` (http for a cleartext listener): the name kept, the port
        the harness listens on for it."""
        try:
            _, port, tls = self._names[name.lower()]
        except KeyError:
            raise MisdirectError(
                f"{self._label}: the scenario serves no name {name!r}; it has {', '.join(sorted(self._names))}"
            ) from None
        if not path.startswith("/"):
            path = "/" + path
        return f"{'https' if tls else 'http'}://{name}:{port}{path}"

    @property
    def ca_file(self) -> Path:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the harness's CA (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    @contextlib.contextmanager
    def resolve(self) -> Iterator[None]:
        """Within it, `socket.getaddrinfo` answers the scenario's names with the harness's
        address (other names as before), so that httpx, urllib3, requests and aiohttp reach the
        harness with the name kept for SNI and `Host`. Process-wide while it lasts; nested and
        concurrent uses stack."""
        global _previous_getaddrinfo
        with _mapped_lock:
            if not _mapped:
                _previous_getaddrinfo = socket.getaddrinfo
                socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
            _mapped.append(self)
        try:
            yield
        finally:
            with _mapped_lock:
                for i in range(len(_mapped) - 1, -1, -1):
                    if _mapped[i] is self:
                        del _mapped[i]
                        break
                if not _mapped and _previous_getaddrinfo is not None:
                    socket.getaddrinfo = _previous_getaddrinfo  # type: ignore[assignment]
                    _previous_getaddrinfo = None

    # -- the control API --------------------------------------------------------------------

    def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(self._control + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=_REQUEST_TIMEOUT) as answer:
                return answer.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            try:
                answer = json.loads(detail)
                detail = str(answer.get("error", detail))
                problems = answer.get("problems") or []
                if problems:
                    detail += ": " + "; ".join(str(p) for p in problems)
            except (ValueError, AttributeError):
                pass
            raise MisdirectError(f"{self._label}: {method} {path}: {error.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            raise MisdirectError(
                f"{self._label}: {method} {path}: the control API did not answer: {error}{self._why_not()}"
            ) from None

    def _why_not(self) -> str:
        """What a subclass knows of why the server does not answer (it exited…)."""
        return ""

    def _json(self, method: str, path: str, body: bytes | None = None) -> Any:
        return json.loads(self._call(method, path, body))

    def journal(self, since: int | None = None) -> list[dict[str, Any]]:
        """The journal's events (after sequence number `since`), as dicts."""
        return self._json("GET", "/journal" + (f"?since={int(since)}" if since is not None else ""))

    def requests(self) -> list[dict[str, Any]]:
        """The journal's `request` events."""
        return [e for e in self.journal() if e.get("event") == "request"]

    def reset(self) -> int:
        """Clears the journal and every counter, between test cases; returns the reset's seq."""
        return int(self._json("POST", "/reset")["seq"])

    def verdict(self, allow_not_exercised: bool = False) -> Verdict:
        """The verdict on what the journal holds now."""
        query = "?table=true" + ("&allow_not_exercised=true" if allow_not_exercised else "")
        return Verdict.from_json(self._json("GET", "/verdict" + query))

    def assert_passed(self, allow_not_exercised: bool = False) -> Verdict:
        """Raises AssertionError with the verdict table unless the verdict passes."""
        verdict = self.verdict(allow_not_exercised)
        if not verdict.passed:
            raise AssertionError(f"misdirect verdict ({self._label}):\n{verdict.table}")
        return verdict

    def report_html(self) -> str:
        """The run as one HTML page (connections as lanes, each request and its answer)."""
        return self._call("GET", "/report").decode()

    def load(self, scenario: Scenario) -> None:
        """Puts another scenario in force for new connections (its listeners must be the
        same); raises MisdirectError with the server's reasons if it is refused."""
        text = _scenario_text(scenario, self._binary)
        self._json("PUT", "/scenario", text.encode())
        self._label = _describe(scenario)
        self._refresh_names()

    def _refresh_names(self) -> None:
        raise NotImplementedError


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _scenario_text(scenario: Scenario, binary: Path | None) -> str:
    if isinstance(scenario, Mapping):
        try:
            return json.dumps(scenario)
        except (TypeError, ValueError) as error:
            raise MisdirectError(f"{_describe(scenario)}: not JSON: {error}") from None
    text = os.fspath(scenario)
    if text.startswith("bundled:"):
        return bundled(text[len("bundled:") :], binary)
    try:
        return Path(text).read_text()
    except OSError as error:
        raise MisdirectError(f"{text}: {error.strerror or error}") from None


class Harness(Endpoint):
    """`misdirect serve` for one test: its own free ports, its own certificate folder and
    journal, stopped on exit.

        with misdirect.Harness("scenarios/first-attempt-421.json") as h:
            with h.resolve():
                httpx.get(h.url("app.site.test", "/profile"), verify=h.ssl_context())
            assert h.verdict().passed

    `scenario` is a file, `bundled:ID` (a scenario compiled into misdirect: `misdirect
    scenarios` lists them) or a dict. `workdir` keeps the files (certificates, journal, the
    server's log) in a folder of yours; by default a temporary one is removed on exit.
    Raises MisdirectError, with the server's own message, if it cannot start within
    `startup_timeout` seconds."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        binary: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        args: Sequence[str] = (),
    ) -> None:
        self._scenario = scenario
        self._binary = Path(binary) if binary is not None else None
        self._workdir = Path(workdir) if workdir is not None else None
        self._startup_timeout = startup_timeout
        self._args = list(args)
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._owns_dir = False
        self.ready: dict[str, Any] = {}
        """The readiness JSON the server wrote (listeners, CA, certificates, names…)."""
        self._names = {}
        self._control = ""
        self._label = _describe(scenario)

    # -- life -------------------------------------------------------------------------------

    def start(self) -> "Harness":
        if self._process is not None:
            return self
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Harness":
        binary = self._binary or find_binary()
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
            self._dir = self._workdir
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="misdirect-"))
            self._owns_dir = True
        if isinstance(self._scenario, Mapping) or os.fspath(self._scenario).startswith("bundled:"):
            scenario_file = self._dir / "scenario.json"
            scenario_file.write_text(_scenario_text(self._scenario, binary))
        else:
            scenario_file = Path(os.fspath(self._scenario)).resolve()
            if not scenario_file.is_file():
                raise MisdirectError(f"{self._label}: no such scenario file")
        ready_file = self._dir / "ready.json"
        log_file = self._dir / "serve.log"
        with contextlib.suppress(FileNotFoundError):
            ready_file.unlink()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MISDIRECT_") or k in _KEPT_VARIABLES}
        command = [
            str(binary),
            "serve",
            str(scenario_file),
            "--ready-file",
            str(ready_file),
            "--certs-dir",
            str(self._dir / "certs"),
            "--journal",
            str(self._dir / "journal.ndjson"),
            "--control",
            "127.0.0.1:0",
            "--log",
            "warn",
            # The server ends with this process, however it ends: its stdin is a pipe only
            # we hold.
            "--exit-with-stdin",
            *self._args,
        ]
        with open(log_file, "wb") as log:
            try:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=self._dir
                )
            except OSError as error:
                raise MisdirectError(f"{self._label}: cannot start {binary}: {error}") from None
        deadline = time.monotonic() + self._startup_timeout
        while not ready_file.is_file():
            code = self._process.poll()
            if code is not None:
                message = _tail(log_file)
                raise MisdirectError(f"{self._label}: misdirect serve exited with {code} before it was ready:\n{message}")
            if time.monotonic() > deadline:
                message = _tail(log_file)
                raise MisdirectError(
                    f"{self._label}: misdirect serve was not ready within {self._startup_timeout:g} s:\n{message}"
                )
            time.sleep(0.02)
        self.ready = json.loads(ready_file.read_text())
        self._control = str(self.ready.get("control") or "")
        self._names = _names_of(self.ready)
        return self

    def stop(self) -> None:
        """Stops the server (SIGTERM: it finishes in-flight requests and flushes the journal;
        SIGKILL after 10 s) and removes the temporary folder."""
        process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._cleanup()

    def _why_not(self) -> str:
        process = self._process
        if process is None:
            return " (the harness is stopped)"
        code = process.poll()
        if code is None or self._dir is None:
            return ""
        return f"; misdirect serve exited with {code}:\n{_tail(self._dir / 'serve.log')}"

    def _cleanup(self) -> None:
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._owns_dir = False

    def __enter__(self) -> "Harness":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def keep(self, folder: str | os.PathLike[str]) -> Path:
        """Copies what shows this run — the journal (NDJSON), the HTML picture, the verdict
        table, the server's log — into `folder`; returns it."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        if self._dir is not None:
            for name in ("journal.ndjson", "serve.log", "scenario.json"):
                if (self._dir / name).is_file():
                    shutil.copy(self._dir / name, target / name)
        if self.running:
            with contextlib.suppress(MisdirectError):
                (target / "report.html").write_text(self.report_html())
            with contextlib.suppress(MisdirectError):
                (target / "verdict.txt").write_text(self.verdict().table)
        return target

    # -- what it offers ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def control(self) -> str:
        """The control API's base URL."""
        return self._control

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) the client must trust."""
        return Path(self.ready["ca"])

    @property
    def journal_file(self) -> Path:
        """The NDJSON journal, every event as it happens."""
        return Path(self.ready["journal"])

    @property
    def listeners(self) -> dict[str, dict[str, Any]]:
        """Each listener by name: address, ip, port, tls, alpn."""
        return {listener["name"]: listener for listener in self.ready.get("listeners", [])}

    def port(self, listener: str | None = None) -> int:
        """The port of a listener (by default the first)."""
        listeners = self.ready.get("listeners", [])
        if listener is None:
            return int(listeners[0]["port"])
        return int(self.listeners[listener]["port"])

    def _refresh_names(self) -> None:
        self._names = _names_of(self._json("GET", "/ready"))


def _names_of(
    ready: Mapping[str, Any], reach: Callable[[str, int], tuple[str, int]] = lambda host, port: (host, port)
) -> dict[str, tuple[str, int, bool]]:
    """The readiness JSON's names → (host, port, tls); `reach` turns the address the server
    bound into the one a client connects to (a container's mapped port)."""
    tls = {listener["name"]: bool(listener.get("tls", True)) for listener in ready.get("listeners", [])}
    names = {}
    for name, where in (ready.get("names") or {}).items():
        host, _, port = str(where["address"]).rpartition(":")
        names[name.lower()] = (*reach(host.strip("[]"), int(port)), tls.get(where.get("listener"), True))
    return names


def _describe(scenario: Scenario) -> str:
    if isinstance(scenario, Mapping):
        return f"scenario {scenario.get('name') or scenario.get('id') or '(a dict)'}"
    return os.fspath(scenario)


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:].strip()
