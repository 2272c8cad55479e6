"""roles/haproxy/templates/haproxy.cfg.j2 rendered by Ansible with the role's defaults
passes `haproxy -c`, with retries (the default) and with haproxy_retry_enabled false
(the release drill's measurement: no retry of any kind). The test renders through a copy
of the role whose only task writes the template (the role's tasks install packages);
it fails when no haproxy binary is installed (.ci/run installs it)."""
import re
import shutil
import subprocess

import pytest

from ansible_run import render_role_template

SERVERS = [{"name": "app1", "address": "127.0.0.1", "port": 18000},
           {"name": "app2", "address": "127.0.0.1", "port": 18001}]


def render(tmp_path, **extra):
    variables = {"ansible_host": "127.0.0.1", "haproxy_stats_password": "not-a-secret",
                 "haproxy_backend_servers": SERVERS, **extra}
    return render_role_template(tmp_path, "haproxy", "haproxy.cfg.j2", variables).read_text()


def check(tmp_path, text):
    haproxy = shutil.which("haproxy")
    if not haproxy:
        pytest.fail("haproxy is not installed: `apt-get install haproxy` (.ci/run installs it)")
    path = tmp_path / "check.cfg"
    path.write_text(text)
    res = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def retry_lines(text):
    return [line.strip() for line in text.splitlines()
            if re.match(r"\s+(retries|retry-on|option redispatch|http-request disable-l7-retry)\b", line)]


def test_default_retries_idempotent_requests_and_failed_connections(tmp_path):
    text = render(tmp_path)
    check(tmp_path, text)
    assert retry_lines(text) == [
        "retries 3", "option redispatch 1", "retry-on conn-failure empty-response junk-response response-timeout",
        "http-request disable-l7-retry unless retryable_method"]


def test_retry_disabled_retries_nothing(tmp_path):
    text = render(tmp_path, haproxy_retry_enabled=False)
    check(tmp_path, text)
    assert retry_lines(text) == ["retries 0", "retry-on none"]
    assert "option redispatch" not in text


def test_an_isolated_app_server_starts_disabled(tmp_path):
    """edge.yml marks an isolated (compromised) app host `disabled`: MAINT from the start,
    so a reload keeps it out of rotation; the others stay as they were."""
    servers = [SERVERS[0], dict(SERVERS[1], disabled=True)]
    text = render(tmp_path, haproxy_backend_servers=servers)
    check(tmp_path, text)
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("server app")]
    assert lines == ["server app1 127.0.0.1:18000", "server app2 127.0.0.1:18001 disabled"]
