"""Helpers for the end-to-end tests: run playbooks against the lab that
`make lab` built (inventories/lab/hosts.yml) and read its inventory."""
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
INVENTORY = pathlib.Path(os.environ.get("LAB_INVENTORY", REPO / "inventories/lab/hosts.yml"))
VAULT_PASS = pathlib.Path(os.environ.get("LAB_VAULT_PASS", REPO / ".lab/vault-pass"))


def ansible_env():
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                ANSIBLE_FORCE_COLOR="0", PATH=f"{BIN}:{os.environ['PATH']}")


def run_playbook(playbook, *extra, timeout=1800):
    """Run a playbook against the lab; return (returncode, combined output)."""
    cmd = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASS),
           str(REPO / "playbooks" / playbook), *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def parse_recap(output):
    """PLAY RECAP lines → {host: {"ok": n, "changed": n, ...}}."""
    recap, in_recap = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap, recap = True, {}
            continue
        if in_recap and ":" in line and "=" in line:
            host, _, counters = line.partition(":")
            recap[host.strip()] = {k: int(v) for k, v in (c.split("=") for c in counters.split())}
    return recap


def lab_inventory_data():
    """`ansible-inventory --list` of the lab (hostvars with vault values resolved)."""
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--vault-password-file",
                          str(VAULT_PASS), "--list"], cwd=REPO, env=ansible_env(), capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)
