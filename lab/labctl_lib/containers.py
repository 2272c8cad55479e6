"""Lab hosts as containers: create or reuse them, wait for systemd, bootstrap them
like a fresh cloud VM, wait for SSH; the per-lab lock."""

import fcntl
import hashlib
import json
import os
import shutil
import time

from .settings import (
    BOOT_TIMEOUT,
    EDGE_CERT_BACKUP,
    GROUP_ORDER,
    LAB_NAME,
    LABEL,
    NETWORK,
    REPO,
    SSH_KEY,
    SSH_OPTS,
    STATE_DIR,
    SYSTEMD_FLAGS,
)
from .util import LabError, cname, docker, log, run


def inspect_container(name):
    p = docker("container", "inspect", name, check=False)
    return json.loads(p.stdout)[0] if p.returncode == 0 else None


def lab_containers():
    """All containers of this lab: list of (host, inspect-info)."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={LAB_NAME}").stdout.split()
    if not ids:
        return []
    infos = json.loads(docker("container", "inspect", *ids).stdout)
    out = []
    for info in infos:
        host = (info["Config"]["Labels"] or {}).get("ssai.lab.host")
        if host:
            out.append((host, info))
    return sorted(out, key=lambda hi: (GROUP_ORDER.index(hi[1]["Config"]["Labels"].get(
        "ssai.lab.group", "labsvc")), hi[0]))


def lab_owner():
    """Which lab state (.lab/: SSH key, vault) the hosts were built for: a digest of
    the lab's public key. Hosts left by another checkout (say an earlier CI clone)
    hold that checkout's secrets (pgBackRest's encrypted repository, the CA), so
    they are recreated rather than reused with this checkout's new vault."""
    with open(SSH_KEY + ".pub", "rb") as f:
        return hashlib.sha256(f.read().split(b" ")[1]).hexdigest()[:16]


def forget_edge_certificates():
    """A new Pebble (lab services host) has a new root: the saved edge certificates
    were issued by the old one."""
    if os.path.isdir(EDGE_CERT_BACKUP):
        shutil.rmtree(EDGE_CERT_BACKUP)
        log(f"removed {os.path.relpath(EDGE_CERT_BACKUP, REPO)} (issued by the lab's previous Pebble)")


def ensure_container(spec, ref, distro):
    name = cname(spec["name"])
    recipe = ref.split(":")[1]
    owner = lab_owner()
    info = inspect_container(name)
    if info is not None:
        labels = info["Config"]["Labels"] or {}
        if labels.get(LABEL) != LAB_NAME:
            raise LabError(f"container {name} exists and is not part of lab {LAB_NAME}: "
                           "refusing to touch it (set LAB_NAME)")
        outdated = labels.get("ssai.lab.recipe") != recipe
        if outdated and info["State"]["Running"] and os.environ.get("LAB_KEEP_HOSTS"):
            log(f"{spec['name']}: runs an older image recipe; kept (LAB_KEEP_HOSTS)")
            return "kept"
        if labels.get("ssai.lab.owner") != owner:
            log(f"{spec['name']}: built for another lab state (another checkout's key and vault): "
                "recreating it")
            docker("rm", "-f", name)
        elif outdated or labels.get("ssai.lab.ip") != spec["ip"]:
            log(f"{spec['name']}: image recipe or address changed: recreating (what was "
                "deployed on it is gone; set LAB_KEEP_HOSTS=1 to keep running hosts)")
            docker("rm", "-f", name)
        elif not info["State"]["Running"]:
            log(f"{spec['name']}: starting the stopped container")
            docker("start", name)
            return "started"
        else:
            return "kept"
    if spec["group"] == "labsvc":
        forget_edge_certificates()
    docker("run", "-d", "--name", name, "--hostname", spec["name"],
           "--network", NETWORK, "--ip", spec["ip"], "--network-alias", spec["name"],
           "--label", f"{LABEL}={LAB_NAME}", "--label", f"ssai.lab.host={spec['name']}",
           "--label", f"ssai.lab.group={spec['group']}", "--label", f"ssai.lab.ip={spec['ip']}",
           "--label", f"ssai.lab.distro={distro}", "--label", f"ssai.lab.recipe={recipe}",
           "--label", f"ssai.lab.owner={owner}",
           *SYSTEMD_FLAGS, ref, "/sbin/init")
    return "created"


def systemd_state(name):
    p = docker("exec", name, "systemctl", "is-system-running", check=False)
    return (p.stdout or "").strip() or "unreachable"


def wait_systemd(host, name, timeout):
    deadline = time.time() + timeout
    state = "unknown"
    while time.time() < deadline:
        state = systemd_state(name)
        if state == "running":
            return True
        if state == "degraded":
            # give units that are still restarting a moment, then report
            time.sleep(3)
            if systemd_state(name) == "running":
                return True
            failed = docker("exec", name, "systemctl", "list-units", "--state=failed",
                            "--no-legend", "--plain", check=False).stdout.strip()
            if os.environ.get("LAB_ALLOW_DEGRADED"):
                log(f"WARNING: {host}: systemd is degraded (LAB_ALLOW_DEGRADED); "
                    f"failed units:\n{failed}")
                return False
            raise LabError(f"{host}: systemd is degraded; failed units:\n{failed}")
        time.sleep(1)
    raise LabError(f"{host}: systemd not running after {timeout} s (state: {state})")


# Runs once per host (like cloud-init's user setup), again only when the lab key or
# the package cache address changed: later runs must not undo what the roles manage.
BOOTSTRAP = r"""
set -eu
if [ "$(cat /var/lib/ssai-lab-bootstrap 2>/dev/null)" = "$LAB_BOOTSTRAP_ID" ]; then
  exit 0
fi
# the deploy user, like a cloud VM's default user: key-only, passwordless sudo
id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --user-group deploy
install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
printf '%s\n' "$LAB_PUBKEY" >/tmp/.lab-authorized_keys
install -m 0600 -o deploy -g deploy /tmp/.lab-authorized_keys /home/deploy/.ssh/authorized_keys
rm -f /tmp/.lab-authorized_keys
printf 'deploy ALL=(ALL) NOPASSWD:ALL\n' >/tmp/.lab-sudoers
visudo -cqf /tmp/.lab-sudoers
install -m 0440 -o root -g root /tmp/.lab-sudoers /etc/sudoers.d/90-cloud-init-users
rm -f /tmp/.lab-sudoers
# the lab's package cache
if [ -n "$LAB_APT_PROXY" ]; then
  printf 'Acquire::http::Proxy "%s";\n' "$LAB_APT_PROXY" >/etc/apt/apt.conf.d/01proxy
else
  rm -f /etc/apt/apt.conf.d/01proxy
fi
printf '%s\n' "$LAB_BOOTSTRAP_ID" >/var/lib/ssai-lab-bootstrap
"""


def ssh_cmd(ip, *remote):
    return ["ssh", "-i", SSH_KEY, *SSH_OPTS, f"deploy@{ip}", *remote]


def wait_ssh(host, ip, timeout, healthy=True):
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        p = run(ssh_cmd(ip, "sudo -n true && hostname && systemctl is-system-running"),
                check=False)
        out = (p.stdout or "").split()
        if out[:1] == [host] and (out[-1:] == ["running"] or not healthy):
            return
        last = (p.stderr or p.stdout or "").strip()
        time.sleep(1)
    raise LabError(f"{host}: no SSH as deploy@{ip} after {timeout} s: {last}")


def bring_up(spec, ref, distro, pubkey, lab_proxy):
    name = cname(spec["name"])
    t0 = time.time()
    action = ensure_container(spec, ref, distro)
    healthy = wait_systemd(spec["name"], name, BOOT_TIMEOUT)
    boot_id = hashlib.sha256(f"{pubkey}|{lab_proxy or ''}".encode()).hexdigest()[:16]
    docker("exec", "-i", "-e", f"LAB_PUBKEY={pubkey}", "-e", f"LAB_APT_PROXY={lab_proxy or ''}",
           "-e", f"LAB_BOOTSTRAP_ID={boot_id}", name, "sh", "-s", input=BOOTSTRAP)
    wait_ssh(spec["name"], spec["ip"], 60, healthy)
    log(f"{spec['name']:8} {spec['ip']:15} {action:8} ready in {time.time() - t0:.0f} s")


class lab_lock:
    """Serialise up/down/remove of one lab (several engineers, one machine)."""

    def __enter__(self):
        os.makedirs(STATE_DIR, exist_ok=True)
        self.f = open(os.path.join(STATE_DIR, f"lab-{LAB_NAME}.lock"), "w")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"another labctl is changing lab {LAB_NAME}: waiting for it")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()
