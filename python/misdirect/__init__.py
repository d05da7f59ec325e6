"""misdirect: a scriptable HTTP/2 test-harness server that answers 421 Misdirected Request
exactly when a scenario says so, for testing the connection coalescing and retries of real
HTTP clients. This package carries the `misdirect` binary and a small API over it:

    with misdirect.Harness("bundled:first-attempt-421") as h:
        with h.resolve():
            httpx.Client(http2=True, verify=h.ssl_context()).get(h.url("app.site.test", "/profile"))
        h.assert_passed()

The pytest plugin (the `misdirect` fixture) and `misdirect.testcontainers` build on it.
"""

from ._binary import bundled, find_binary
from ._errors import MisdirectError
from ._harness import Check, Endpoint, Harness, Scenario, Verdict

__all__ = [
    "Check",
    "Endpoint",
    "Harness",
    "MisdirectError",
    "Scenario",
    "Verdict",
    "bundled",
    "find_binary",
]
