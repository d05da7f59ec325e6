"""The pytest plugin (entry point `pytest11`): the `misdirect` fixture starts harnesses that
stop when the test ends, and `--misdirect-keep DIR` keeps what shows a failed test's runs.

    def test_retry(misdirect):
        h = misdirect("bundled:first-attempt-421")
        ...
        h.assert_passed()        # AssertionError with the verdict table
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ._harness import Harness, Scenario

_REPORT = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("misdirect", "misdirect HTTP/2 test harness")
    group.addoption(
        "--misdirect-keep",
        metavar="DIR",
        default=None,
        help="keep the journal, HTML picture, verdict and server log of every harness of a failed test under DIR/TEST/",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    item.stash.setdefault(_REPORT, {})[report.when] = report
    return report


@pytest.fixture
def misdirect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Harness]]:
    """A factory: `misdirect(scenario, **options)` starts a `misdirect.Harness` (a file,
    `bundled:ID` or a dict) for this test and stops it when the test ends."""
    started: list[Harness] = []

    def start(scenario: Scenario, **options: Any) -> Harness:
        harness = Harness(scenario, **options).start()
        started.append(harness)
        return harness

    yield start

    keep = request.config.getoption("--misdirect-keep")
    reports = request.node.stash.get(_REPORT, {})
    failed = any(r.failed for r in reports.values())
    for i, harness in enumerate(started, 1):
        try:
            if keep and failed:
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
                folder = harness.keep(Path(keep) / name / str(i))
                request.node.add_report_section("teardown", "misdirect", f"kept in {folder}")
        finally:
            harness.stop()
