"""Testinfra checks for the auditd role (in a container: installed, not run)."""


def test_installed(host):
    assert host.package("auditd").is_installed


def test_rules(host):
    f = host.file("/etc/audit/rules.d/50-socialsphere.rules")
    assert f.mode == 0o640
    c = f.content_string
    for key in ("identity", "sudoers", "sshd", "time-change", "modules", "privileged"):
        assert f"-k {key}" in c
    assert "-F path=/usr/bin/sudo -F perm=x" in c


def test_rules_assemble(host):
    r = host.run("augenrules --check")
    assert r.rc == 0


def test_not_run_in_container(host):
    # the kernel audit subsystem is the host's: the role leaves auditd stopped here
    assert not host.service("auditd").is_running
