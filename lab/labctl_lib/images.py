"""Base images (`labctl images`): debootstrap recipes built by lab/build-image.sh,
tagged with the recipe hash, shared by all labs of the machine (and Molecule)."""

import concurrent.futures
import fcntl
import hashlib
import json
import os
import time

from .cache import ensure_cache
from .engine import cmd_engine
from .settings import DISTROS, IMAGE_LABEL, IS_ROOT, LAB_DIR, STATE_DIR
from .util import LabError, apt_install, docker, have, log, run


def packages(distro):
    with open(os.path.join(LAB_DIR, "image-packages.txt")) as f:
        pkgs = [ln.split("#", 1)[0].strip() for ln in f]
    return [p for p in pkgs if p] + DISTROS[distro]["extra_packages"]


def recipe_hash(distro):
    h = hashlib.sha256()
    for fn in ("build-image.sh", "image-packages.txt"):
        with open(os.path.join(LAB_DIR, fn), "rb") as f:
            h.update(f.read())
    h.update(json.dumps(DISTROS[distro], sort_keys=True).encode())
    return h.hexdigest()[:12]


def image_ref(distro):
    return f"ssai/{distro}:{recipe_hash(distro)}"


def image_exists(ref):
    return docker("image", "inspect", ref, check=False).returncode == 0


def ensure_image(distro, host_proxy):
    ref = image_ref(distro)
    if image_exists(ref):
        docker("tag", ref, f"ssai/{distro}:latest")
        return ref
    if not IS_ROOT:
        raise LabError("building images needs root (debootstrap): run `sudo lab/labctl images`")
    if not have("debootstrap"):
        apt_install("debootstrap")
    # machine-wide lock (not under LAB_STATE_DIR, which may differ between runs)
    lock_dir = "/run/lock" if os.access("/run/lock", os.W_OK) else STATE_DIR
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, f"ssai-lab-build-{distro}.lock"), "w") as lock:
        try:  # one build per distro at a time on this machine
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"another labctl is building {ref}: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(ref):
            docker("tag", ref, f"ssai/{distro}:latest")
            return ref
        return _build_image(distro, ref, host_proxy)


def _build_image(distro, ref, host_proxy):
    d = DISTROS[distro]
    env = dict(os.environ)
    if host_proxy:
        env["http_proxy"] = host_proxy
    env["LAB_IMAGE_LABELS"] = f"{IMAGE_LABEL}={distro} ssai.lab.recipe={recipe_hash(distro)}"
    t0 = time.time()
    log(f"building image {ref} (recipe changed or image missing)")
    run([os.path.join(LAB_DIR, "build-image.sh"), d["family"], d["suite"], d["mirror"],
         d["security_mirror"], d["components"], ",".join(packages(distro)),
         ref, f"ssai/{distro}:latest"], env=env, capture=False)
    log(f"image {ref} built in {time.time() - t0:.0f} s")
    return ref


def _image_refs(distro=None):
    flt = f"{IMAGE_LABEL}={distro}" if distro else IMAGE_LABEL
    out = docker("images", "--filter", f"label={flt}", "--format",
                 "{{.Repository}}:{{.Tag}}").stdout.split()
    return [r for r in out if not r.endswith(":<none>")]


def prune_old_images(distro):
    """Drop tags of older recipes of DISTRO that no container uses any more."""
    keep = {image_ref(distro), f"ssai/{distro}:latest"}
    for ref in _image_refs(distro):
        if ref not in keep and docker("rmi", ref, check=False).returncode == 0:
            log(f"removed the outdated image {ref}")


def cmd_images(args):
    cmd_engine()
    host_proxy, _ = ensure_cache()
    distros = list(DISTROS) if args.distro == "all" else [args.distro]
    with concurrent.futures.ThreadPoolExecutor(len(distros)) as ex:
        for ref in ex.map(lambda d: ensure_image(d, host_proxy), distros):
            print(ref)
    for d in distros:
        prune_old_images(d)
