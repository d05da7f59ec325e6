"""urllib3 2 (HTTP/1.1) against bundled scenarios: what it earns.

urllib3 speaks HTTP/1.1 here, so it never coalesces; its default Retry does not cover 421,
and a retry it is told to make goes back on the pooled connection, which RFC 9110 §15.5.20
does not forbid but a careful client avoids.
"""

import urllib3


def pool(h):
    return urllib3.PoolManager(ssl_context=h.ssl_context(), retries=False)


def test_urllib3_returns_a_421_without_retrying(misdirect):
    h = misdirect("bundled:first-attempt-421")
    with h.resolve():
        response = pool(h).request("GET", h.url("app.site.test", "/profile"))
    assert response.status == 421
    verdict = h.verdict()
    assert sorted(c.expectation for c in verdict.failed) == ["requests = 2", "retried_on_new_connection"]


def test_urllib3_told_to_retry_a_421_reuses_the_connection(misdirect):
    """Retry(status_forcelist=[421]) retries, but on the connection that answered 421."""
    h = misdirect("bundled:first-attempt-421")
    retry = urllib3.Retry(total=2, status_forcelist=[421], backoff_factor=0)
    with h.resolve():
        manager = urllib3.PoolManager(ssl_context=h.ssl_context(), retries=retry)
        response = manager.request("GET", h.url("app.site.test", "/profile"))
    assert response.status == 200
    verdict = h.verdict()
    assert [c.expectation for c in verdict.failed] == ["retried_on_new_connection"], verdict.table
    assert "only on the same connection" in verdict.failed[0].explanation


def test_urllib3_keeps_names_on_their_own_addresses(misdirect):
    h = misdirect("bundled:same-cert-different-ip")
    with h.resolve():
        manager = pool(h)
        statuses = [manager.request("GET", h.url(n, p)).status for n, p in [("www.site.test", "/"), ("cdn.site.test", "/app.js")]]
    assert statuses == [200, 200]
    h.assert_passed()
