"""Helpers shared by every part of labctl: the one error type, logging to stderr,
running commands, distribution packages, and lab host names (<kind><n>)."""

import os
import re
import shutil
import subprocess
import sys
import threading

from .settings import DEFAULT_HOSTS, HOST_KINDS, IS_ROOT, LAB_NAME, LAB_SUBNET

_print_lock = threading.Lock()


class LabError(Exception):
    pass


def log(msg):
    with _print_lock:
        print(f"[lab] {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, capture=True, input=None, env=None, quiet=False):
    """Run a command; return CompletedProcess (text)."""
    p = subprocess.run(cmd, input=input, text=True, env=env, check=False,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and p.returncode != 0:
        err = (p.stderr or "").strip() if capture else ""
        raise LabError(f"command failed ({p.returncode}): {' '.join(cmd[:6])}"
                       + ("" if quiet else f"\n{err}"))
    return p


def docker(*args, check=True, **kw):
    return run(["docker", *args], check=check, **kw)


def have(cmd):
    return shutil.which(cmd) is not None


def apt_install(*packages):
    """Install distribution packages; only on a root Debian/Ubuntu host."""
    if not (IS_ROOT and have("apt-get")):
        raise LabError(f"missing {' '.join(packages)}: install it (needs root and apt)")
    if os.environ.get("LAB_NO_INSTALL"):
        raise LabError(f"missing {' '.join(packages)} and LAB_NO_INSTALL is set")
    log(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def host_spec(name):
    m = re.fullmatch(r"([a-z]+)([1-9])", name)
    if not m or m.group(1) not in HOST_KINDS:
        raise LabError(f"unknown lab host name {name!r}: use <kind><1-9> with kind in "
                       f"{', '.join(HOST_KINDS)} (e.g. app3)")
    group, base = HOST_KINDS[m.group(1)]
    n = int(m.group(2))
    return {"name": name, "group": group, "n": n,
            "ip": str(LAB_SUBNET.network_address + base + n)}


def cname(host):
    return f"{LAB_NAME}-{host}"


def wanted_hosts(args_hosts):
    names = args_hosts or os.environ.get("LAB_HOSTS", "").split() or DEFAULT_HOSTS.split()
    return [host_spec(h) for h in dict.fromkeys(names)]
