"""Releases on the lab: an artifact of this checkout (scripts/build-release), Fabric's
tasks against the lab inventory (fabfile.py), the release an app host runs."""
from __future__ import annotations

import os
import subprocess
import sys

from labkit.hosts import lab_exec
from labkit.inventory import INVENTORY, REPO, VAULT_PASS, ansible_env


def fab_env(env: dict | None = None) -> dict:
    """The environment of `fab` on the lab: its inventory and vault password file
    (SSAI_INVENTORY, SSAI_VAULT_PASSWORD_FILE), plus `env`."""
    return dict(ansible_env(), SSAI_INVENTORY=str(INVENTORY), SSAI_VAULT_PASSWORD_FILE=str(VAULT_PASS), **(env or {}))


def fab_command(*args: str) -> list[str]:
    """The command line of a Fabric task (the tool venv's fab)."""
    return [os.path.join(os.path.dirname(sys.executable), "fab"), *args]


def fab(*args: str, timeout: int = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Fabric task of fabfile.py against the lab inventory (env: extra variables)."""
    return subprocess.run(fab_command(*args), cwd=REPO, env=fab_env(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def build_release(suffix: str = "") -> str:
    """Build (or reuse) an artifact of this checkout; return its version."""
    cmd = [sys.executable, str(REPO / "scripts" / "build-release")]
    if suffix:
        cmd += ["--version-suffix", suffix]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True, timeout=900).stdout
    name = os.path.basename(out.strip().splitlines()[-1])
    return name.removeprefix("socialsphere-").removesuffix(".tar.gz")


def current_release(inv: dict, host: str) -> str:
    return os.path.basename(lab_exec(inv, host, "readlink", "/srv/socialsphere/current").stdout.strip())
