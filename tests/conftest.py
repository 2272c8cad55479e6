"""Shared pytest settings for the infrastructure tests."""
import os
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
# tests/ansible_run.py is the shared helper of tests/unit, tests/lab and tests/e2e.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
# plugins/filter/ssai_facts.py: the deployment's shared facts (PostgreSQL version, ...),
# the same functions the playbooks use as filters.
sys.path.insert(0, str(REPO / "plugins" / "filter"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With SSAI_FAIL_ON_SKIP=1 (`make test-e2e`, so CI) a skipped test fails: a lab
    test that skips because the lab lacks something has proven nothing."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("SSAI_FAIL_ON_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and SSAI_FAIL_ON_SKIP=1 makes that a failure: {reason}"
