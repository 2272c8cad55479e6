"""Helpers for the end-to-end tests: run playbooks against the lab that
`make lab` built (inventories/lab/hosts.yml) and read its inventory."""
import json
import os
import pathlib
import re
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/ (benches import this too)
import ansible_run  # noqa: E402
from ansible_run import BIN, REPO, ansible_env  # noqa: E402,F401  (re-exported to the tests)

INVENTORY = pathlib.Path(os.environ.get("LAB_INVENTORY", REPO / "inventories/lab/hosts.yml"))
VAULT_PASS = pathlib.Path(os.environ.get("LAB_VAULT_PASS", REPO / ".lab/vault-pass"))


def run_playbook(playbook, *extra, timeout=1800):
    """Run a playbook against the lab; return (returncode, combined output)."""
    return ansible_run.run_playbook(INVENTORY, playbook, *extra, vault_pass=VAULT_PASS, timeout=timeout)


_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:[a-z]+=\d+\s*)+)$")


def parse_recap(output):
    """PLAY RECAP lines → {host: {"ok": n, "changed": n, ...}}. Lines after the
    recap that are not host counters (warnings printed at exit) are ignored."""
    recap, in_recap = {}, False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap, recap = True, {}
            continue
        match = _RECAP_LINE.match(line.rstrip()) if in_recap else None
        if match:
            recap[match.group(1)] = {k: int(v) for k, v in (c.split("=") for c in match.group(2).split())}
    return recap


def lab_inventory_data():
    """`ansible-inventory --list` of the lab (hostvars with vault values resolved)."""
    out = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(INVENTORY), "--vault-password-file",
                          str(VAULT_PASS), "--list"], cwd=REPO, env=ansible_env(), capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)
