"""Testinfra checks for the firewall role."""
import re


def status(host):
    return host.run("ufw status verbose").stdout


def rules(host):
    return [re.sub(r"\s+", " ", line).strip() for line in host.run("ufw status").stdout.splitlines()]


def test_enabled_with_defaults(host):
    out = status(host)
    assert "Status: active" in out
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in out
    assert host.service("ufw").is_enabled


def test_ssh_limited_from_admin_cidrs_only(host):
    r = rules(host)
    assert "22/tcp LIMIT 192.0.2.0/24 # socialsphere: SSH" in r
    assert "22/tcp LIMIT 172.16.0.0/12 # socialsphere: SSH" in r
    assert not any(x.startswith("22/tcp") and "Anywhere" in x for x in r)


def test_edge_rules(host):
    r = rules(host)
    assert "80/tcp ALLOW Anywhere # socialsphere: HTTP" in r
    assert "443/tcp ALLOW Anywhere # socialsphere: HTTPS" in r
    assert "8405/tcp ALLOW 10.99.0.51 # socialsphere: HAProxy metrics" in r
    assert any("vrrp" in x.lower() and "10.99.0.12" in x for x in r), r


def test_db_rules(host):
    r = rules(host)
    for src in ("10.99.0.21", "10.99.0.41"):
        assert f"5432/tcp ALLOW {src} # socialsphere: PostgreSQL" in r
    assert "8432/tcp ALLOW 10.99.0.41 # socialsphere: pgBackRest TLS" in r
    assert "9187/tcp ALLOW 10.99.0.51 # socialsphere: postgres_exporter" in r
    # PostgreSQL is not open to edge or monitoring hosts
    assert not any(x.startswith("5432/tcp") and ("10.99.0.12" in x or "10.99.0.51" in x) for x in r)


def test_all_and_extra_rules(host):
    r = rules(host)
    assert "9100/tcp ALLOW 10.99.0.51 # socialsphere: node_exporter" in r
    assert "3000/tcp ALLOW 198.51.100.0/24 # socialsphere: Office Grafana" in r


def test_not_app_or_labsvc(host):
    r = rules(host)
    assert not any(x.startswith(("8000/tcp", "14000/tcp", "1025/tcp")) for x in r)


def test_control_node_not_rate_limited_and_first(host):
    r = rules(host)
    i = r.index("22/tcp ALLOW 192.0.2.10 # socialsphere: SSH control node")
    j = r.index("22/tcp LIMIT 192.0.2.0/24 # socialsphere: SSH")
    assert i < j
