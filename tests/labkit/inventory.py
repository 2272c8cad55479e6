"""Which lab the tests talk to, and Ansible runs against it.

LAB_INVENTORY    inventory source(s), comma separated (later ones win), default
                 inventories/lab/hosts.yml: lab/labctl's variable too (where it writes
                 the inventory of a lab with another LAB_NAME), so labctl and the tests
                 name one lab. A relative path is taken from the repository when it does
                 not exist from the working directory. The Molecule db-cluster inventory
                 works for the database drills (~/.ansible/tmp/molecule.*.db-cluster/inventory).
                 Not SSAI_INVENTORY: that is the operator's variable for `fab` (the
                 release runbook exports it for production), and the drills kill and
                 destroy hosts; labkit.release.fab passes it as this inventory. An
                 inventory of the repository outside inventories/lab/ is refused.
LAB_VAULT_PASS   the vault password file (default .lab/vault-pass); passed to Ansible
                 when it exists.

Playbooks run through tests/ansible_run.py (the one runner and recap parser of tests/).
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import ansible_run
from ansible_run import BIN, REPO, ansible_env, parse_recap  # noqa: F401  (re-exported to the tests)

DEFAULT_INVENTORY = REPO / "inventories" / "lab" / "hosts.yml"


def _source(raw: str) -> str:
    path = pathlib.Path(raw)
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        return str(REPO / path)  # relative to the repository, wherever pytest runs
    return raw


SOURCES: list[str] = [_source(s) for s in os.environ.get("LAB_INVENTORY", str(DEFAULT_INVENTORY)).split(",") if s]
for _src in SOURCES:
    _path = pathlib.Path(_src).resolve()
    if _path.is_relative_to(REPO / "inventories") and not _path.is_relative_to(REPO / "inventories" / "lab"):
        raise RuntimeError(f"LAB_INVENTORY={_src}: the lab tests and drills (they kill, destroy and rebuild hosts) "
                           "run only against a lab: inventories/lab/hosts*.yml or a Molecule inventory")
# The (first) inventory file: what `fab`, labctl and the vault scripts are given.
INVENTORY = pathlib.Path(SOURCES[0])
VAULT_PASS = pathlib.Path(os.environ.get("LAB_VAULT_PASS", REPO / ".lab/vault-pass"))


def vault_pass() -> pathlib.Path | None:
    """The vault password file when it exists (a Molecule inventory has no vault)."""
    return VAULT_PASS if VAULT_PASS.exists() else None


def inventory_args(*extra_sources: str) -> list[str]:
    """-i for every source, then for extra ones (an overlay: later sources win)."""
    args = []
    for source in [*SOURCES, *extra_sources]:
        args += ["-i", str(source)]
    return args


def vault_args() -> list[str]:
    password = vault_pass()
    return ["--vault-password-file", str(password)] if password else []


def load(*extra_sources: str) -> dict:
    """`ansible-inventory --list` of the lab (hostvars with vault values resolved), with
    optional extra sources (an overlay)."""
    out = subprocess.run([str(BIN / "ansible-inventory"), *inventory_args(*extra_sources), *vault_args(), "--list"],
                         cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def lab_inventory_data() -> dict:
    """`ansible-inventory --list` of the lab (hostvars with vault values resolved)."""
    return load()


def run_playbook_process(playbook: str, *extra: str, extra_sources: tuple = (), env: dict | None = None,
                         timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run a playbook (a name under playbooks/ or a path) against the lab; the
    CompletedProcess with ``elapsed``."""
    return ansible_run.run_playbook_process([*SOURCES, *extra_sources], playbook, *extra, vault_pass=vault_pass(),
                                            env=env, timeout=timeout)


def run_playbook(playbook: str, *extra: str, timeout: int = 1800) -> tuple[int, str]:
    """Run a playbook against the lab; return (returncode, combined output)."""
    proc = run_playbook_process(playbook, *extra, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr
