"""Testinfra checks for the common role."""
import pytest

MARKER = "socialsphere-admin (managed by ansible)"


@pytest.mark.parametrize("pkg", ["chrony", "sudo", "libpam-tmpdir", "acct", "sysstat", "needrestart"])
def test_packages(host, pkg):
    assert host.package(pkg).is_installed


def test_timezone(host):
    assert host.file("/etc/timezone").content_string.strip() == "UTC" or \
        host.file("/etc/localtime").linked_to.endswith("UTC")


def test_locale(host):
    assert "LANG=C.UTF-8" in host.file("/etc/default/locale").content_string


def test_chrony_running(host):
    svc = host.service("chrony")
    assert svc.is_enabled and svc.is_running


def test_journald_persistent(host):
    conf = host.file("/etc/systemd/journald.conf.d/50-socialsphere.conf").content_string
    assert "Storage=persistent" in conf and "SystemMaxUse=500M" in conf
    assert host.file("/var/log/journal").is_directory


def test_apt_proxy_absent_by_default(host):
    assert not host.file("/etc/apt/apt.conf.d/01proxy").exists


@pytest.mark.parametrize("name", ["deploy", "alice"])
def test_admin_users(host, name):
    user = host.user(name)
    assert user.exists
    assert "deploy" in user.groups
    assert user.gecos == MARKER
    keys = host.file(f"/home/{name}/.ssh/authorized_keys")
    assert keys.mode == 0o600 and keys.user == name
    assert keys.content_string.count("ssh-ed25519") == 1


def test_removed_users(host):
    assert not host.user("olduser").exists
    assert not host.user("mallory").exists
    assert host.user("bystander").exists


def test_sudoers(host):
    f = host.file("/etc/sudoers.d/50-socialsphere-admins")
    assert f.mode == 0o440 and f.user == "root"
    assert "%deploy ALL=(ALL:ALL) NOPASSWD: ALL" in f.content_string
    assert host.run("visudo -c").rc == 0
    assert host.run("sudo -l -U alice").stdout.find("NOPASSWD: ALL") >= 0


def test_login_defs(host):
    c = host.file("/etc/login.defs").content_string
    assert "\nUMASK\t027" in c and "\nPASS_MAX_DAYS\t365" in c


def test_hardening_files(host):
    assert "install dccp /bin/false" in host.file("/etc/modprobe.d/socialsphere-blacklist.conf").content_string
    assert "hard    core    0" in host.file("/etc/security/limits.d/10-socialsphere-nocore.conf").content_string
    assert "Authorised access only" in host.file("/etc/issue.net").content_string


def test_cron_restricted(host):
    assert host.file("/etc/crontab").mode == 0o600
    assert host.file("/etc/cron.d").mode == 0o700


def test_accounting(host):
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string
    assert host.service("acct").is_enabled
