"""Lab hosts arrive like fresh cloud VMs: SSH as the deploy user with a key only,
systemd running, passwordless sudo, the hostname of the inventory.

Reads the generated lab inventory (env LAB_INVENTORY, default
inventories/lab/hosts.yml: tests/labkit/inventory.py); skips when the lab is not up.
"""

import concurrent.futures
import re
import socket
import subprocess

import pytest

yaml = pytest.importorskip("yaml")

from labkit.inventory import INVENTORY  # noqa: E402  (after importorskip)


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
    global_vars = dict(allgroup.get("vars") or {})
    # The deploy key the control node connects with: group_vars/all/deploy_key.yml
    # (labctl writes it beside the generated hosts file; it wins over hosts.yml).
    deploy_key = INVENTORY.parent / "group_vars" / "all" / "deploy_key.yml"
    if deploy_key.exists():
        global_vars.update(yaml.safe_load(deploy_key.read_text()) or {})
    return global_vars, hosts


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


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


REMOTE_PROBE = (
    'echo "user=$(id -un)"; echo "hostname=$(hostname)"; '
    'echo "sudo=$(sudo -n id -u 2>&1)"; '
    'echo "systemd=$(systemctl is-system-running)"; '
    "systemctl --failed --no-legend --plain"
)


def _probe(name):
    """One key-based login (what the tests check) and one password-only attempt."""
    user = GLOBAL_VARS.get("ansible_user", "deploy")
    key = GLOBAL_VARS["ansible_ssh_private_key_file"]
    login = _run(SSH_BASE + ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key,
                             f"{user}@{_ip(name)}",
                             REMOTE_PROBE])
    # Ask only for password/keyboard-interactive: the server must not offer them.
    password = _run(SSH_BASE + ["-v", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no",
                                "-o", "PreferredAuthentications=password,keyboard-interactive",
                                f"{user}@{_ip(name)}", "true"])
    return login, password


@pytest.fixture(scope="module")
def probes():
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
        return dict(zip(HOSTS, pool.map(_probe, HOSTS), strict=False))


@pytest.fixture(params=sorted(HOSTS), ids=str)
def host(request):
    return request.param


def _facts(probes, host):
    login, _ = probes[host]
    assert login.returncode == 0, login.stderr
    facts = dict(ln.split("=", 1) for ln in login.stdout.splitlines() if "=" in ln)
    facts["failed_units"] = [ln for ln in login.stdout.splitlines() if "=" not in ln]
    return facts


def test_key_login_as_deploy_and_hostname(probes, host):
    facts = _facts(probes, host)
    assert facts["user"] == GLOBAL_VARS.get("ansible_user", "deploy")
    assert facts["hostname"] == host


def test_password_authentication_is_refused(probes, host):
    _, p = probes[host]
    assert p.returncode != 0
    offered = re.findall(r"Authentications that can continue: (\S+)", p.stderr)
    assert offered, p.stderr
    methods = set(",".join(offered).split(","))
    assert "password" not in methods and "keyboard-interactive" not in methods, methods


def test_sudo_is_passwordless(probes, host):
    assert _facts(probes, host)["sudo"] == "0"


def test_systemd_is_running(probes, host):
    facts = _facts(probes, host)
    assert facts["systemd"] == "running", facts["failed_units"]
