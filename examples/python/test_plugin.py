"""The pytest plugin: the fixture's failure message is the verdict table, and
--misdirect-keep keeps what shows a failed test's runs (and nothing of a passing one)."""

pytest_plugins = ["pytester"]

INNER = '''
import httpx

def test_fails(misdirect):
    h = misdirect("bundled:first-attempt-421")
    with h.resolve(), httpx.Client(http2=True, verify=h.ssl_context()) as client:
        client.get(h.url("app.site.test", "/profile"))
    h.assert_passed()

def test_passes(misdirect):
    h = misdirect("bundled:same-cert-different-ip")
    with h.resolve(), httpx.Client(http2=True, verify=h.ssl_context()) as client:
        client.get(h.url("www.site.test"))
        client.get(h.url("cdn.site.test", "/app.js"))
    h.assert_passed()
'''


def test_a_failed_verdict_shows_its_table_and_is_kept(pytester):
    pytester.makepyfile(INNER)
    keep = pytester.path / "kept"
    result = pytester.runpytest_subprocess(f"--misdirect-keep={keep}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*misdirect verdict (bundled:first-attempt-421):*",
            "*FAIL*robust*retried_on_new_connection*was never retried on another connection*",
            "*verdict: FAIL (1 passed, 2 failed, 0 not exercised)*",
        ]
    )
    kept = sorted(p.relative_to(keep).as_posix() for p in keep.rglob("*") if p.is_file())
    folder = "test_a_failed_verdict_shows_its_table_and_is_kept.py_test_fails/1"
    assert kept == [f"{folder}/{name}" for name in ("journal.ndjson", "report.html", "scenario.json", "serve.log", "verdict.txt")], kept
    assert "retried_on_new_connection" in (keep / folder / "verdict.txt").read_text()
