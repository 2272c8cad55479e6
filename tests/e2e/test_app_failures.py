"""App host failures under load: kill -9 of Gunicorn → systemd restarts it and HAProxy
routes around it with no failed idempotent requests; the worker timers keep running."""
import time

from test_app_support import Edge, LoadGenerator, group_hosts, lab_exec


def _main_pid(inv, host):
    return lab_exec(inv, host, "systemctl", "show", "-p", "MainPID", "--value", "socialsphere.service").stdout.strip()


def _ready(inv, host, timeout=60):
    addr = inv["_meta"]["hostvars"][host]["ansible_host"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab_exec(inv, host, "curl", "-fsS", f"http://{addr}:8000/readyz", check=False).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def test_kill_9_gunicorn_under_load(lab_inventory):
    host = group_hosts(lab_inventory, "app")[0]
    edge = Edge.from_inventory(lab_inventory)
    before = _main_pid(lab_inventory, host)
    assert before not in ("", "0")
    with LoadGenerator(edge) as load:
        time.sleep(3)
        lab_exec(lab_inventory, host, "kill", "-9", before)
        t0 = time.monotonic()
        assert _ready(lab_inventory, host, 60), f"{host}: Gunicorn not back within 60 s"
        restart_seconds = time.monotonic() - t0
        time.sleep(10)  # HAProxy brings it back (rise 2 x inter 2s) while load continues
    after = _main_pid(lab_inventory, host)
    print(f"{host}: Gunicorn back (pid {before} -> {after}) in {restart_seconds:.1f}s; {load.result.summary()}")
    assert after not in ("", "0", before)
    assert load.result.total > 100
    assert load.result.failed == 0, load.result.summary()


def test_worker_timers_are_active(lab_inventory):
    for host in group_hosts(lab_inventory, "app"):
        for timer in ("socialsphere-publish.timer", "socialsphere-email.timer"):
            res = lab_exec(lab_inventory, host, "systemctl", "is-active", timer, check=False)
            assert res.stdout.strip() == "active", (host, timer, res.stdout)
        res = lab_exec(lab_inventory, host, "systemctl", "start", "socialsphere-publish.service", check=False)
        assert res.returncode == 0, (host, res.stderr)
