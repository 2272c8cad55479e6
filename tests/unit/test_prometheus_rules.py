"""Prometheus alerting and recording rules: valid, unit-tested, documented.

- `promtool check rules` accepts every file in roles/prometheus/files/rules/;
- `promtool test rules` passes every tests/prometheus/*.test.yml;
- every alert has severity page|ticket and the annotations summary, description
  and runbook_url;
- every alert has a promtool test case where it fires and one where it does not;
- every runbook_url names a file under docs/runbooks/ and a heading in it
  (GitHub's anchor slug), and docs/runbooks/alerts.md lists every alert.

promtool comes with the Debian/Ubuntu package `prometheus` (CI installs it). Without
it these tests fail: a rule file nobody checked must not pass as green.
"""
from __future__ import annotations

import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "roles" / "prometheus" / "files" / "rules"
TESTS_DIR = REPO / "tests" / "prometheus"
RUNBOOKS = REPO / "docs" / "runbooks"

RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.test.yml"))
SEVERITIES = {"page", "ticket"}
ANNOTATIONS = ("summary", "description", "runbook_url")


def alerting_rules() -> list[tuple[str, dict]]:
    """[(rule file name, rule)] for every alerting rule."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(path.name, rule) for rule in group["rules"] if "alert" in rule]
    return found


def alert_id(item) -> str:
    window = item[1].get("labels", {}).get("long_window")
    return f"{item[0]}:{item[1]['alert']}" + (f"[{window}]" if window else "")


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: install the package `prometheus` "
                    "(apt-get install prometheus) to check and test the alert rules")
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)


def test_there_are_rules_and_tests():
    assert RULE_FILES, f"no *.rules.yml in {RULES_DIR}"
    assert TEST_FILES, f"no *.test.yml in {TESTS_DIR}"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    res = run_promtool(promtool, "check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool, path):
    res = run_promtool(promtool, "test", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("item", alerting_rules(), ids=alert_id)
def test_alert_labels_and_annotations(item):
    _name, rule = item
    severity = rule.get("labels", {}).get("severity")
    assert severity in SEVERITIES, f"{rule['alert']}: severity {severity!r} not in {sorted(SEVERITIES)}"
    annotations = rule.get("annotations", {})
    missing = [a for a in ANNOTATIONS if not str(annotations.get(a, "")).strip()]
    assert not missing, f"{rule['alert']}: missing annotations {missing}"
    assert re.match(r"^docs/runbooks/[\w.-]+\.md#[\w-]+$", annotations["runbook_url"]), (
        f"{rule['alert']}: runbook_url {annotations['runbook_url']!r} is not docs/runbooks/<file>.md#<anchor>")


def alerts_in_tests() -> tuple[set[str], set[str]]:
    """(alert names some test expects to fire, alert names some test expects quiet)."""
    firing, quiet = set(), set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text()).get("tests", []):
            for check in case.get("alert_rule_test", []) or []:
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    return firing, quiet


def test_every_alert_is_tested_firing_and_quiet():
    names = {rule["alert"] for _f, rule in alerting_rules()}
    firing, quiet = alerts_in_tests()
    assert not names - firing, f"alerts without a test case where they fire: {sorted(names - firing)}"
    assert not names - quiet, f"alerts without a test case where they do not fire: {sorted(names - quiet)}"
    unknown = (firing | quiet) - names
    assert not unknown, f"tests name alerts that no rule defines: {sorted(unknown)}"


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub generates for the headings of a Markdown file."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_github_anchor_slug():
    text = "# Runbook: the DB\n## HostDown\n## Disk (predicted) full!\n## HostDown\n```\n# not a heading\n```\n"
    assert github_anchors(text) == {"runbook-the-db", "hostdown", "disk-predicted-full", "hostdown-1"}


@pytest.mark.parametrize("item", alerting_rules(), ids=alert_id)
def test_runbook_url_resolves(item):
    _name, rule = item
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    file = REPO / path
    assert file.is_file() and file.resolve().is_relative_to(RUNBOOKS.resolve()), (
        f"{rule['alert']}: {path} is not a file under docs/runbooks/")
    assert anchor in github_anchors(file.read_text()), f"{rule['alert']}: no heading with anchor #{anchor} in {path}"


def test_alerts_index_lists_every_alert():
    """docs/runbooks/alerts.md maps every alert to its runbook section."""
    index = (RUNBOOKS / "alerts.md").read_text()
    for _name, rule in alerting_rules():
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        row = next((line for line in index.splitlines() if line.startswith(f"| `{rule['alert']}` |")), None)
        assert row is not None, f"docs/runbooks/alerts.md has no row for {rule['alert']}"
        assert f"{pathlib.Path(path).name}#{anchor}" in row, f"alerts.md: {rule['alert']} does not link {path}#{anchor}"
