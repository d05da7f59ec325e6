"""The pytest plugin (entry point `pytest11`): the `misdirect` fixture starts harnesses that
stop when the test ends, and `--misdirect-keep DIR` keeps what shows a failed test's runs.

    def test_retry(misdirect):
        h = misdirect("bundled:first-attempt-421")
        ...
        h.assert_passed()        # AssertionError with the verdict table
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ._harness import Harness, Scenario

# Where a test's phase reports are kept, on the item (the old-style hook wrapper and a plain
# attribute work with every pytest from 6 on).
_REPORTS = "_misdirect_reports"


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("misdirect", "misdirect HTTP/2 test harness")
    group.addoption(
        "--misdirect-keep",
        metavar="DIR",
        default=None,
        help="keep the journal, HTML picture, verdict and server log of every harness of a failed test under DIR/TEST/N/",
    )


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    reports = getattr(item, _REPORTS, None)
    if reports is None:
        reports = {}
        setattr(item, _REPORTS, reports)
    reports[report.when] = report


@pytest.fixture
def misdirect(request: Any) -> Iterator[Callable[..., Harness]]:
    """A factory: `misdirect(scenario, **options)` starts a `misdirect.Harness` (a file,
    `bundled:ID` or a dict) for this test and stops it when the test ends."""
    started: list[Harness] = []

    def start(scenario: Scenario, **options: Any) -> Harness:
        harness = Harness(scenario, **options).start()
        started.append(harness)
        return harness

    yield start

    keep = request.config.getoption("--misdirect-keep")
    reports = getattr(request.node, _REPORTS, {})
    failed = any(r.failed for r in reports.values())
    errors: list[BaseException] = []
    if keep and failed and started:
        base = Path(request.config.invocation_params.dir) / keep
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
        folder = base / name
        shutil.rmtree(folder, ignore_errors=True)  # what an earlier run kept there
        for i, harness in enumerate(started, 1):
            try:
                kept = harness.keep(folder / str(i))
                request.node.add_report_section("teardown", "misdirect", f"kept in {kept}")
            except Exception as error:  # keep the others, and stop every one
                errors.append(error)
    for harness in started:
        try:
            harness.stop()
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]
