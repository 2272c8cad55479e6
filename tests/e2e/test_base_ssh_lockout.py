"""The operator is not locked out by SSH changes: base.yml's ssh role is run
twice (a real change, then back to the defaults); after each run a NEW ssh
connection (no control master) as the inventory's user logs in and sudo works.
Changes that would lock the operator out (AllowGroups without the operator's
group, a port move) are refused before sshd_config changes.
"""
from __future__ import annotations

import subprocess

import pytest

from labkit.inventory import parse_recap, run_playbook


def fresh_ssh(inv, host, *cmd):
    hv = inv["_meta"]["hostvars"][host]
    args = ["ssh", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-i", hv["ansible_ssh_private_key_file"],
            f"{hv['ansible_user']}@{hv['ansible_host']}", *cmd]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def check_all(inv):
    bad = {}
    for host in sorted(inv["_meta"]["hostvars"]):
        r = fresh_ssh(inv, host, "sudo", "-n", "sshd", "-T")
        if r.returncode != 0:
            bad[host] = r.stderr.strip()[-300:]
    assert not bad, f"locked out: {bad}"


def test_ssh_changes_do_not_lock_out(lab_inventory):
    rc, out = run_playbook("base.yml", "--tags", "ssh", "-e", "ssh_client_alive_interval=240")
    assert rc == 0, out[-4000:]
    check_all(lab_inventory)
    host = sorted(lab_inventory["_meta"]["hostvars"])[0]
    assert "clientaliveinterval 240" in fresh_ssh(lab_inventory, host, "sudo", "-n", "sshd", "-T").stdout
    rc, out = run_playbook("base.yml", "--tags", "ssh")
    assert rc == 0, out[-4000:]
    check_all(lab_inventory)
    assert "clientaliveinterval 300" in fresh_ssh(lab_inventory, host, "sudo", "-n", "sshd", "-T").stdout
    rc, out = run_playbook("base.yml", "--tags", "ssh")
    assert rc == 0, out[-4000:]
    changed = {h: c["changed"] for h, c in parse_recap(out).items() if c.get("changed")}
    assert not changed, f"third run changed: {changed}"
    check_all(lab_inventory)


@pytest.mark.parametrize("change", [
    '{"ssh_allow_groups": ["no-such-operators"]}',   # operator not in AllowGroups
    '{"ssh_port": 2222}',                            # sshd leaves the port this run uses
])
def test_change_that_would_lock_out_is_refused(lab_inventory, change):
    """A change that would cut the operator off is refused before sshd is
    touched: the run fails with the preflight's message, and a new login still
    works with the settings of before."""
    host = sorted(lab_inventory["_meta"]["hostvars"])[0]
    before = fresh_ssh(lab_inventory, host, "sudo", "-n", "sha256sum", "/etc/ssh/sshd_config").stdout
    rc, out = run_playbook("base.yml", "--tags", "ssh", "--limit", f"{host},localhost", "-e", change)
    assert rc != 0, out[-4000:]
    assert "Refusing to change sshd" in out, out[-4000:]
    r = fresh_ssh(lab_inventory, host, "sudo", "-n", "sha256sum", "/etc/ssh/sshd_config")
    assert r.returncode == 0, r.stderr
    assert r.stdout == before and before
