"""Testinfra checks for the node_exporter role."""
import re


def _address(host):
    return host.check_output("hostname -I").split()[0]


def test_service_running(host):
    svc = host.service("prometheus-node-exporter")
    assert svc.is_running
    assert svc.is_enabled


def test_listens_on_private_address_only(host):
    addr = _address(host)
    out = host.check_output("ss -Hltn sport = :9100")
    listeners = [line.split()[3] for line in out.splitlines()]
    assert listeners == [f"{addr}:9100"], listeners


def test_serves_metrics_and_textfiles(host):
    addr = _address(host)
    host.run_expect([0], "install -d -m 0755 /var/lib/prometheus/node-exporter")
    host.run_expect([0], "echo 'molecule_textfile_probe 42' > /var/lib/prometheus/node-exporter/probe.prom")
    try:
        body = host.check_output(f"python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{addr}:9100/metrics', timeout=10).read().decode())\"")
    finally:
        host.run("rm -f /var/lib/prometheus/node-exporter/probe.prom")
    assert "node_exporter_build_info" in body
    assert re.search(r"^molecule_textfile_probe 42$", body, re.M)
    # the disabled collector is off
    assert 'collector="nfs"' not in body
