"""Lab hosts arrive like fresh cloud VMs: SSH as the deploy user with a key only,
systemd running, passwordless sudo, the hostname of the inventory.

Reads the generated lab inventory (env LAB_INVENTORY, default
inventories/lab/hosts.yml); skips when the lab is not up.
"""

import os
import pathlib
import re
import socket
import subprocess

import pytest

yaml = pytest.importorskip("yaml")

REPO = pathlib.Path(__file__).resolve().parents[2]
INVENTORY = pathlib.Path(os.environ.get("LAB_INVENTORY", REPO / "inventories/lab/hosts.yml"))


def _load_inventory():
    if not INVENTORY.exists():
        return {}, {}
    data = yaml.safe_load(INVENTORY.read_text()) or {}
    allgroup = data.get("all") or {}
    hosts = {}

    def walk(group):
        for name, hvars in ((group or {}).get("hosts") or {}).items():
            hosts[name] = hvars or {}
        for child in ((group or {}).get("children") or {}).values():
            walk(child)

    walk(allgroup)
    return allgroup.get("vars") or {}, hosts


GLOBAL_VARS, HOSTS = _load_inventory()


def _port_open(ip, port=22):
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


def _lab_is_up():
    return any(_port_open(h.get("ansible_host", name)) for name, h in HOSTS.items())


pytestmark = pytest.mark.skipif(
    not HOSTS or not _lab_is_up(),
    reason=f"lab not up (no reachable host in {INVENTORY}); run `make lab`",
)

SSH_BASE = [
    "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
]


def _ip(name):
    return HOSTS[name].get("ansible_host", name)


def _ssh(name, command):
    user = GLOBAL_VARS.get("ansible_user", "deploy")
    key = GLOBAL_VARS["ansible_ssh_private_key_file"]
    cmd = SSH_BASE + ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key,
                      f"{user}@{_ip(name)}", command]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture(params=sorted(HOSTS), ids=str)
def host(request):
    return request.param


def test_key_login_as_deploy_and_hostname(host):
    p = _ssh(host, "id -un; hostname")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [GLOBAL_VARS.get("ansible_user", "deploy"), host]


def test_password_authentication_is_refused(host):
    # Ask only for password/keyboard-interactive; the server must not offer them.
    cmd = SSH_BASE + ["-v", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
                      "-o", "PreferredAuthentications=password,keyboard-interactive",
                      "-o", "LogLevel=DEBUG1", f"deploy@{_ip(host)}", "true"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    offered = re.findall(r"Authentications that can continue: (\S+)", p.stderr)
    assert offered, p.stderr
    methods = set(",".join(offered).split(","))
    assert "password" not in methods and "keyboard-interactive" not in methods, methods


def test_systemd_is_running(host):
    p = _ssh(host, "systemctl is-system-running; systemctl --failed --no-legend --plain")
    assert p.stdout.splitlines()[:1] == ["running"], p.stdout


def test_sudo_is_passwordless(host):
    p = _ssh(host, "sudo -n id -u")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0"
