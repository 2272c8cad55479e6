"""Testinfra checks for the sysctl role."""


def test_file(host):
    f = host.file("/etc/sysctl.d/60-socialsphere-hardening.conf")
    assert f.mode == 0o644
    c = f.content_string
    assert "kernel.kptr_restrict = 2" in c
    assert "net.ipv4.tcp_syncookies = 1" in c
    assert "ip_forward" not in c


def test_file_parses(host):
    # every line is key = value or a comment
    for ln in host.file("/etc/sysctl.d/60-socialsphere-hardening.conf").content_string.splitlines():
        assert ln.startswith("#") or " = " in ln


def test_forwarding_untouched(host):
    # the role never turns off forwarding unless asked
    assert host.run("sysctl -n net.ipv4.ip_forward").rc == 0
