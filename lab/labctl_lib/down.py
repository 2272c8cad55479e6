"""`labctl down` (what this lab created, and only that) and `labctl purge` (also the
shared images, package cache, lab key and vault, unless another lab still exists)."""

import os
import shutil

from .cache import lab_gateways, stop_cache
from .containers import forget_edge_certificates, lab_lock
from .engine import docker_ok
from .images import _image_refs
from .settings import GENERATED_MARK, INVENTORY, KEY_DIR, LAB_NAME, LABEL, NETWORK, REPO, STATE_DIR, VAULT
from .util import docker, log


def _remove_generated(path):
    try:
        with open(path) as f:
            head = f.read(200)
    except OSError:
        return
    if GENERATED_MARK in head or head.startswith("$ANSIBLE_VAULT"):
        os.remove(path)
        log(f"removed {os.path.relpath(path, REPO)}")


def cmd_down(_args=None):
    with lab_lock():
        _down()


def _down():
    if not docker_ok():
        log("docker engine not running: nothing to remove")
        return
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={LAB_NAME}").stdout.split()
    if ids:
        log(f"removing {len(ids)} lab container(s)")
        docker("rm", "-f", "-v", *ids)
        forget_edge_certificates()
    for net in docker("network", "ls", "-q", "--filter", f"label={LABEL}={LAB_NAME}").stdout.split():
        log(f"removing network {NETWORK}")
        docker("network", "rm", net)
    if not lab_gateways():
        stop_cache()  # other labs still use it otherwise
    _remove_generated(INVENTORY)


def cmd_purge(_args):
    cmd_down()
    others = docker("network", "ls", "--filter", f"label={LABEL}", "--format",
                    "{{.Name}}").stdout.split() if docker_ok() else []
    if others:
        log(f"other labs still exist ({' '.join(others)}): keeping the images, the package "
            "cache, .lab/ and the vault (purge those labs first)")
        return
    if docker_ok():
        refs = _image_refs()
        if refs:
            log(f"removing the lab base images: {' '.join(refs)}")
        for ref in refs:
            # never forced: an image still used by somebody's container stays
            p = docker("rmi", ref, check=False)
            if p.returncode != 0:
                log(f"WARNING: kept {ref}: {p.stderr.strip()}")
    if os.path.isdir(STATE_DIR):
        log(f"removing the package cache {STATE_DIR}")
        shutil.rmtree(STATE_DIR)
    _remove_generated(VAULT)
    if os.path.isdir(KEY_DIR):
        log("removing .lab/ (SSH key, vault password)")
        shutil.rmtree(KEY_DIR)
