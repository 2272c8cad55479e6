"""Testinfra checks for the unattended_upgrades role."""


def test_periodic(host):
    c = host.file("/etc/apt/apt.conf.d/20auto-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in c
    assert 'APT::Periodic::Update-Package-Lists "1";' in c


def test_effective_config(host):
    out = host.run("apt-config dump Unattended-Upgrade").stdout
    assert 'Unattended-Upgrade::Package-Blacklist:: "postgresql";' in out
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in out
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "03:30";' in out
    origins = [ln for ln in out.splitlines() if ln.startswith("Unattended-Upgrade::Origins-Pattern::")]
    assert len(origins) == 1 and "security" in origins[0].lower()


def test_timers(host):
    for t in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(t).is_enabled
    assert "OnCalendar=*-*-* 06:00" in host.file(
        "/etc/systemd/system/apt-daily-upgrade.timer.d/50-socialsphere.conf").content_string
