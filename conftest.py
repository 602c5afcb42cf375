"""Test setup for the whole repository: the tests, the doctests in src/ and the notebooks."""

import os

import pytest
from hypothesis import settings

# In CI, hypothesis draws the same examples every run (derandomize): a red CI then always means a
# change broke something, never an unlucky draw. On a developer's machine it explores afresh each run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test fails: CI installs every test dependency (torch, micrograd, Chromium,
    the renderer), so a skip there would hide a missing feature instead of testing it. On a
    developer's machine a test may still skip, with its reason, when an optional piece is absent."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {reason}"
