"""Testinfra checks for the fail2ban role (jails + filters on sample lines)."""
import json

import pytest

LOG = "/var/log/nginx/socialsphere.access.log"


def line(status, method="POST", uri="/api/v1/auth/login", addr="203.0.113.7", status_str=False):
    rec = {"time": "2026-11-25T00:30:00+00:00", "remote_addr": addr,
           "status": str(status) if status_str else status, "request_method": method,
           "request_uri": uri, "request_id": "abc123", "body_bytes_sent": 17,
           "http_user_agent": "curl/8"}
    return json.dumps(rec, separators=(",", ":"))


def regex(host, lines, filt):
    host.run("rm -f /tmp/f2b-sample.log")
    for ln in lines:
        host.run(f"printf '%s\\n' '{ln}' >> /tmp/f2b-sample.log")
    r = host.run(f"fail2ban-regex /tmp/f2b-sample.log /etc/fail2ban/filter.d/{filt}.conf")
    assert r.rc == 0, r.stderr
    for out_line in r.stdout.splitlines():
        if out_line.startswith("Failregex:"):
            return int(out_line.split()[1])
    raise AssertionError(r.stdout)


def test_running(host):
    assert host.service("fail2ban").is_running
    assert host.service("fail2ban").is_enabled


@pytest.mark.parametrize("jail", ["sshd", "recidive", "socialsphere-auth", "socialsphere-ratelimit"])
def test_jails(host, jail):
    out = host.run("fail2ban-client status").stdout
    assert jail in out


def test_sshd_jail_uses_journal_and_ufw(host):
    r = host.run("fail2ban-client get sshd bantime")
    assert r.stdout.strip() == "60"
    actions = host.run("fail2ban-client get sshd actions").stdout
    assert "ufw" in actions
    assert "journal" in host.run("fail2ban-client get sshd journalmatch").stdout.lower() or \
        "_COMM=sshd" in host.run("fail2ban-client get sshd journalmatch").stdout


def test_auth_filter(host):
    good = [line(401), line(401, status_str=True), line(401, uri="/api/v1/auth/login?next=/")]
    bad = [line(200), line(401, method="GET"), line(401, uri="/api/v1/auth/logout"), line(429)]
    assert regex(host, good, "socialsphere-auth") == 3
    assert regex(host, bad, "socialsphere-auth") == 0


def test_ratelimit_filter(host):
    assert regex(host, [line(429, method="GET", uri="/api/v1/feed"), line(429, status_str=True)],
                 "socialsphere-ratelimit") == 2
    assert regex(host, [line(200), line(401), line(4290)], "socialsphere-ratelimit") == 0


def test_log_present(host):
    assert host.file(LOG).exists


def test_fail2ban_logs_to_the_journal(host):
    assert "SYSTEMD-JOURNAL" in host.run("fail2ban-client get logtarget").stdout
    assert "SYSLOG_IDENTIFIER=fail2ban" in host.run("fail2ban-client get recidive journalmatch").stdout


@pytest.mark.parametrize("message, matched", [
    ("[sshd] Ban 203.0.113.9", 1),
    ("[socialsphere-auth] Ban 2001:db8::7", 1),
    ("[recidive] Ban 203.0.113.9", 0),        # its own bans do not count
    ("[sshd] Restore Ban 203.0.113.9", 0),    # a restart re-applying a ban is no new offence
    ("[sshd] Found 203.0.113.9 - 2026-11-25 00:30:00", 0),
])
def test_recidive_filter_reads_journal_bans(host, message, matched):
    # The line as fail2ban's systemd backend renders a journal entry.
    r = host.run(f"fail2ban-regex 'Nov 25 00:30:00 host1 fail2ban[321]: {message}' "
                 "recidive")
    assert r.rc == 0, r.stderr
    assert f"{matched} matched" in r.stdout, r.stdout
