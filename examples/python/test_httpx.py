"""httpx with HTTP/2 (httpx 0.28.1, httpcore 1.0.9) against bundled scenarios: what it earns.

httpx never coalesces (one connection per origin) and retries nothing on its own: a 421, a
REFUSED_STREAM and an immediate GOAWAY all reach the caller. The scenarios below pin that,
and show a caller-side retry that earns the verdict httpx alone does not.
"""

import httpx
import pytest


def failing(verdict):
    return sorted(c.expectation for c in verdict.failed)


def test_httpx_returns_a_421_without_retrying(misdirect):
    h = misdirect("bundled:first-attempt-421")
    with h.resolve(), httpx.Client(http2=True, verify=h.ssl_context()) as client:
        response = client.get(h.url("app.site.test", "/profile"))
    assert (response.status_code, response.http_version) == (421, "HTTP/2")
    verdict = h.verdict()
    assert not verdict
    assert failing(verdict) == ["requests = 2", "retried_on_new_connection"], verdict.table


def test_a_retry_on_a_new_connection_earns_the_verdict(misdirect):
    """What RFC 9110 §15.5.20 allows: after a 421, retry on another connection. With httpx
    that is a new Client (its pool would reuse the connection that answered)."""
    h = misdirect("bundled:first-attempt-421")
    url = h.url("app.site.test", "/profile")
    with h.resolve():
        with httpx.Client(http2=True, verify=h.ssl_context()) as client:
            response = client.get(url)
        if response.status_code == 421:
            with httpx.Client(http2=True, verify=h.ssl_context()) as fresh:
                response = fresh.get(url)
    assert response.status_code == 200
    h.assert_passed()


def test_httpx_reports_refused_stream_without_retrying(misdirect):
    h = misdirect("bundled:refused-stream")
    with h.resolve(), httpx.Client(http2=True, verify=h.ssl_context()) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="error_code:7"):
            client.get(h.url("app.site.test", "/feed"))
    verdict = h.verdict()
    assert failing(verdict) == ["retried after refused_stream"], verdict.table


def test_httpx_does_not_retry_a_goaway_with_last_stream_id_0(misdirect):
    """httpcore 1.0.9 reads last_stream_id 0 as "no id": it does not retry the request."""
    h = misdirect("bundled:goaway-retry")
    with h.resolve(), httpx.Client(http2=True, verify=h.ssl_context()) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="last_stream_id:0"):
            client.get(h.url("app.site.test", "/orders"))
    verdict = h.verdict()
    assert failing(verdict) == ["retried_on_new_connection after goaway"], verdict.table


def test_httpx_keeps_names_on_their_own_addresses(misdirect):
    """Two names, one certificate, two addresses: httpx opens a connection for each."""
    h = misdirect("bundled:same-cert-different-ip")
    assert h.addresses["www.site.test"].startswith("127.0.0.1:")
    assert h.addresses["cdn.site.test"].startswith("127.0.0.2:")
    with h.resolve(), httpx.Client(http2=True, verify=h.ssl_context()) as client:
        statuses = [client.get(h.url(n, p)).status_code for n, p in [("www.site.test", "/"), ("cdn.site.test", "/app.js")]]
    assert statuses == [200, 200]
    h.assert_passed()
    assert {r["sni"] for r in h.requests()} == {"www.site.test", "cdn.site.test"}
