"""The package cache (`labctl cache`): apt-cacher-ng on the Docker host, shared by
every lab of the machine (and the image builds)."""

import json
import os
import socket
import subprocess
import time

from .engine import cmd_engine
from .settings import CACHE_PORT, GATEWAY, LABEL, STATE_DIR
from .util import LabError, apt_install, docker, have, log, run

ACNG_DIR = os.path.join(STATE_DIR, "apt-cacher-ng")
ACNG_RUN = os.path.join(STATE_DIR, "acng-run")
ACNG_LOG = os.path.join(STATE_DIR, "acng-log")
ACNG_PID = os.path.join(ACNG_RUN, "pid")
ACNG_CONF = os.path.join(STATE_DIR, "acng-conf")


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _acng_pid():
    try:
        with open(ACNG_PID) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except (OSError, ValueError):
        return None, ""
    return (pid, cmdline) if "apt-cacher-ng" in cmdline else (None, "")


def lab_gateways():
    """Gateways of all lab networks on this machine (any LAB_NAME)."""
    ids = docker("network", "ls", "-q", "--filter", f"label={LABEL}").stdout.split()
    gws = set()
    for info in json.loads(docker("network", "inspect", *ids).stdout) if ids else []:
        for c in info["IPAM"]["Config"] or []:
            if c.get("Gateway"):
                gws.add(c["Gateway"])
    return sorted(gws)


def stop_cache():
    pid, _ = _acng_pid()
    if pid:
        log(f"stopping the package cache (pid {pid}); the cached packages stay in {ACNG_DIR}")
        os.kill(pid, 15)
        for _ in range(50):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)


def ensure_cache():
    """Return (url for the docker host, url for the lab hosts), or (None, None)."""
    external = os.environ.get("LAB_APT_PROXY")
    if external is not None:
        if external.lower() in ("", "off", "none"):
            log("package cache disabled (LAB_APT_PROXY)")
            return None, None
        return external, external
    # one cache for every lab of this machine: listen on each lab network's gateway
    bind = " ".join(["127.0.0.1", *lab_gateways()])
    pid, cmdline = _acng_pid()
    argv = cmdline.split("\0")
    bound = next((a.split("=", 1)[1].split() for a in argv if a.startswith("BindAddress=")), [])
    # Restart only when a new lab network appeared (a restart breaks downloads in
    # flight); the socket of a removed lab's gateway just stays idle.
    if pid and set(bind.split()) <= set(bound) and f"Port={CACHE_PORT}" in argv:
        return f"http://127.0.0.1:{CACHE_PORT}", f"http://{GATEWAY}:{CACHE_PORT}"
    if pid:
        stop_cache()
    if _port_open("127.0.0.1", CACHE_PORT):
        # Somebody else's cache (e.g. the distribution's apt-cacher-ng service on all
        # addresses): use it as it is.
        log(f"port {CACHE_PORT} is already served by another process: using it as the cache")
        return f"http://127.0.0.1:{CACHE_PORT}", f"http://{GATEWAY}:{CACHE_PORT}"
    if not have("apt-cacher-ng"):
        try:
            apt_install("apt-cacher-ng")
        except LabError as e:
            log(f"WARNING: no package cache ({e}); every build downloads again")
            return None, None
        # The package may have started its service (with the packaged Remap rules,
        # which redirect Debian requests to mirrors that may not be reachable): the
        # lab runs its own instance instead.
        if os.path.isdir("/run/systemd/system"):
            run(["systemctl", "disable", "--now", "apt-cacher-ng"], check=False)
        elif os.path.exists("/etc/init.d/apt-cacher-ng"):
            run(["/etc/init.d/apt-cacher-ng", "stop"], check=False)
    for d in (ACNG_DIR, ACNG_RUN, ACNG_LOG, ACNG_CONF):
        os.makedirs(d, exist_ok=True)
    # A private configuration without the package's Remap-* rules: those send
    # deb.debian.org requests to the package's default backend mirrors, which may be
    # unreachable; here every request goes to the host that was asked for.
    with open(os.path.join(ACNG_CONF, "acng.conf"), "w") as f:
        f.write("# written by lab/labctl\n"
                "SupportDir: /usr/lib/apt-cacher-ng\n"
                "ExThreshold: 4\n"
                "ReportPage: acng-report.html\n")
    cmd = ["apt-cacher-ng", "-c", ACNG_CONF, "ForeGround=1",
           f"CacheDir={ACNG_DIR}", f"LogDir={ACNG_LOG}", f"PidFile={ACNG_PID}",
           f"SocketPath={ACNG_RUN}/socket", f"BindAddress={bind}", f"Port={CACHE_PORT}"]
    upstream = os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY")
    if upstream:
        cmd.append(f"Proxy={upstream}")  # chain to the host's own proxy
    log(f"starting the package cache apt-cacher-ng on {bind.replace(' ', ', ')} port "
        f"{CACHE_PORT} (cache: {ACNG_DIR})")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    with open(os.path.join(ACNG_LOG, "daemon.log"), "ab") as out:
        subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                         start_new_session=True, close_fds=True)
    for _ in range(100):
        if all(_port_open(a, CACHE_PORT) for a in bind.split()):
            return f"http://127.0.0.1:{CACHE_PORT}", f"http://{GATEWAY}:{CACHE_PORT}"
        time.sleep(0.1)
    raise LabError(f"apt-cacher-ng did not start: see {ACNG_LOG}/daemon.log")


def cmd_cache(_args=None):
    cmd_engine()
    host_url, _lab_url = ensure_cache()
    print(f"package cache: {host_url or 'none'} (and port {CACHE_PORT} on each lab gateway)")
