"""The Docker engine (`labctl engine`): used as it is when `docker info` answers,
otherwise installed and started (as root); and the host's inotify limits."""

import os
import subprocess
import time

from .settings import IS_ROOT
from .util import LabError, apt_install, have, log, run


def docker_ok():
    return have("docker") and subprocess.run(
        ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        check=False).returncode == 0


def _dockerd_running():
    try:
        with open("/var/run/docker.pid") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "dockerd"
    except (OSError, ValueError):
        return False


def cmd_engine(_args=None):
    """Docker installed and running, and host limits fit for many systemd containers."""
    _ensure_docker()
    ensure_host_limits()


def _ensure_docker():
    if docker_ok():
        return
    if not have("dockerd") or not have("docker"):
        apt_install("docker.io")
    if docker_ok():
        return
    if not IS_ROOT:
        raise LabError("the Docker engine is not running; start it (or run labctl as root)")
    if _dockerd_running():
        log("dockerd is running but not answering yet: waiting for it")
    elif os.path.isdir("/run/systemd/system") and have("systemctl"):
        log("starting docker with systemctl")
        run(["systemctl", "start", "docker"], check=False)
    else:
        log("starting dockerd in the background (log: /var/log/dockerd.log)")
        with open("/var/log/dockerd.log", "ab") as out:
            subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True, close_fds=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        if docker_ok():
            log("docker engine is up")
            return
        time.sleep(1)
    raise LabError("dockerd did not come up in 90 s: see /var/log/dockerd.log")


# Every container runs a whole systemd, and all containers share the host's per-user
# inotify limits (no user namespaces): with the default 128 (1024 on some hosts)
# instances, systemd in the tenth-or-so container fails with "Failed to create inotify
# object: Too many open files" and hangs in "initializing". The usual fix for systemd
# in containers (kind, k3d) is to raise the limits on the host; done here when lower.
HOST_SYSCTLS = {
    "fs/inotify/max_user_instances": 8192,
    "fs/inotify/max_user_watches": 524288,
}


def ensure_host_limits():
    for key, want in HOST_SYSCTLS.items():
        path = f"/proc/sys/{key}"
        try:
            with open(path) as f:
                have_ = int(f.read())
        except (OSError, ValueError):
            continue
        if have_ >= want:
            continue
        if not IS_ROOT or os.environ.get("LAB_NO_SYSCTL"):
            log(f"WARNING: {key.replace('/', '.')} = {have_} (< {want}): many systemd hosts "
                f"may hang; raise it: sysctl -w {key.replace('/', '.')}={want}")
            continue
        try:
            with open(path, "w") as f:
                f.write(str(want))
            log(f"raised {key.replace('/', '.')} from {have_} to {want} (systemd in many "
                "containers needs inotify instances; not persistent across reboots)")
        except OSError as e:
            log(f"WARNING: cannot raise {key.replace('/', '.')} ({e}); many systemd hosts "
                "may hang")
