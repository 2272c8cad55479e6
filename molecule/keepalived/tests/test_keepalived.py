"""keepalived role: VIP held while healthy, released when the health check fails."""
import time


def vip_present(host):
    return "192.0.2.10/32" in host.check_output("ip -4 addr show")


def wait_for(pred, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(1)
    return False


def test_config_private(host):
    f = host.file("/etc/keepalived/keepalived.conf")
    assert f.mode == 0o600 and f.user == "root"


def test_vip_held_when_healthy(host):
    assert host.service("keepalived").is_running
    assert wait_for(lambda: vip_present(host))


def test_vip_released_when_unhealthy(host):
    host.run_test("systemctl stop fakehealth")
    try:
        assert wait_for(lambda: not vip_present(host))
    finally:
        host.run_test("systemctl start fakehealth")
    assert wait_for(lambda: vip_present(host))
