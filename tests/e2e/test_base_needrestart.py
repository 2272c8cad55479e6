"""needrestart never restarts a held service by itself; patch-held-packages.yml does,
in its controlled waves (roles/unattended_upgrades, unattended_upgrades_needrestart_skip;
docs/runbooks/patching.md).

Found in the lab: an unattended upgrade of libgcrypt made needrestart restart HAProxy
and keepalived on the VIP holder in the middle of a drill (6 requests failed). The test
makes a service map an upgraded library the way an upgrade does (the library file is
replaced by an identical copy: the running process keeps the deleted one), runs
needrestart the way the apt hook runs it after every unattended upgrade, and checks:

- HAProxy on the VIP holder and PostgreSQL on a replica keep running (same main PID),
  and needrestart lists them as running an upgraded library;
- check-only names them and changes nothing;
- patch-held-packages.yml restarts them (the VIP moved off the holder first, under
  load through the VIP: only connection errors of the VIP moves, no HTTP error), the
  replica streams again, needrestart lists neither any more, and a second run
  changes nothing.

About 2 minutes. Run alone: pytest -s tests/e2e/test_base_needrestart.py
"""
from __future__ import annotations

import re
import time

import pytest

from labkit import db
from labkit.edge import Edge, vip_holder, wait_vip_holder
from labkit.hosts import group_hosts, lab_exec
from labkit.inventory import parse_recap, run_playbook
from labkit.load import LoadGenerator

# What the apt hook (/usr/lib/needrestart/apt-pinvoke) runs after a dpkg run.
APT_HOOK = ["env", "DEBIAN_FRONTEND=noninteractive", "needrestart", "-m", "u", "-r", "a"]


def main_pid(inv, host, unit):
    return lab_exec(inv, host, "systemctl", "show", "-p", "MainPID", "--value", unit).stdout.strip()


def stale_units(inv, host):
    out = lab_exec(inv, host, "needrestart", "-b", "-r", "l").stdout
    return [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("NEEDRESTART-SVC: ")]


def listed_stale(out, host):
    """The held services the playbook's plan says run an upgraded library on `host`."""
    text = " ".join(out.split())  # the callback folds long messages
    match = re.search(rf"{re.escape(host)}(?: \([a-z]+\))?: [^;]*; held services running an upgraded library: "
                      r"([a-z0-9@, -]+?)'", text)
    return match.group(1).split(", ") if match else []


def replace_a_library(inv, host, pid):
    """Replace one shared library the process maps with an identical copy (a new
    inode, as dpkg installs it): the process now runs a deleted library."""
    script = (f"lib=$(grep -o '/usr/lib/x86_64-linux-gnu/[^ ]*\\.so[^ ]*' /proc/{pid}/maps | sort -u | head -1); "
              'test -n "$lib" && cp -a "$lib" "$lib.ssai-test" && mv "$lib.ssai-test" "$lib" && echo "$lib"')
    lib = lab_exec(inv, host, "sh", "-c", script).stdout.strip()
    assert lib, f"{host}: process {pid} maps no library under /usr/lib"
    return lib


@pytest.fixture(scope="module")
def lab(lab_inventory):
    inv = lab_inventory
    if len(group_hosts(inv, "edge")) < 2 or len(group_hosts(inv, "db")) < 2:
        pytest.skip("needs two edge and two db hosts")
    return inv


def test_needrestart_leaves_the_held_services_to_the_patch_playbook(lab):
    inv = lab
    cluster = db.Cluster()
    primary = cluster.primary()
    replica = next(h for h in cluster.db if h != primary)
    holder = wait_vip_holder(inv, timeout=60)
    assert holder, "no edge host holds the VIP"
    pg_unit = f"postgresql@{cluster.version(replica)}-main"

    before = {(holder, "haproxy"): main_pid(inv, holder, "haproxy"),
              (replica, pg_unit): main_pid(inv, replica, pg_unit)}
    for (host, _unit), pid in before.items():
        print(f"{host}: replaced {replace_a_library(inv, host, pid)}")
        res = lab_exec(inv, host, *APT_HOOK, check=False, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    for (host, unit), pid in before.items():
        assert main_pid(inv, host, unit) == pid, f"{host}: needrestart restarted {unit} by itself"
        assert any(u.startswith(unit) for u in stale_units(inv, host)), f"{host}: needrestart does not list {unit}"

    limit = f"patch_limit={holder}:{replica}"
    rc, out = run_playbook("patch-held-packages.yml", "-e", limit, "-e", "patch_check_only=true")
    assert rc == 0, out[-3000:]
    for host, service in ((holder, "haproxy"), (replica, "postgresql")):
        assert service in listed_stale(out, host), out[-3000:]
    for (host, unit), pid in before.items():
        assert main_pid(inv, host, unit) == pid, f"check-only restarted {unit} on {host}"

    edge = Edge.from_inventory(inv)
    with LoadGenerator(edge, max_seconds=900) as load:
        time.sleep(3)
        t0 = time.monotonic()
        rc, out = run_playbook("patch-held-packages.yml", "-e", limit, timeout=900)
        seconds = time.monotonic() - t0
        deadline = time.monotonic() + 60  # keepalived preempts back after its delay
        while time.monotonic() < deadline and vip_holder(inv) != holder:
            time.sleep(1)
        time.sleep(3)
    print(f"patch-held-packages.yml ({limit}): exit {rc} in {seconds:.0f}s; {load.result.summary()}")
    assert rc == 0, out[-5000:]
    assert "Hand the VIP over" in out
    for (host, unit), pid in before.items():
        assert main_pid(inv, host, unit) not in (pid, "0"), f"{host}: {unit} was not restarted"
        assert not any(u.startswith(unit) for u in stale_units(inv, host)), f"{host}: {unit} still listed"
    cluster.wait_streaming(primary, replica)
    assert vip_holder(inv) == holder, "the VIP did not come back to the higher priority host"
    # Two VIP moves: at most one connection error per load connection per move, no HTTP error.
    assert not load.ran_out
    assert load.result.total > 100 and set(load.result.statuses) == {200}, load.result.summary()
    assert load.result.failed <= 2 * load.threads, load.result.summary()

    rc, out = run_playbook("patch-held-packages.yml", "-e", limit)
    assert rc == 0, out[-3000:]
    changed = {h: c["changed"] for h, c in parse_recap(out).items() if c["changed"]}
    assert not changed, f"a second run changed {changed}"
