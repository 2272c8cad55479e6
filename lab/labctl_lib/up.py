"""`labctl up|add|start` (create, start and bootstrap hosts, then write the inventory)
and `labctl remove` (scale-in): everything else put together."""

import concurrent.futures
import os
import time

from .cache import ensure_cache
from .containers import bring_up, inspect_container, lab_lock
from .engine import cmd_engine
from .images import ensure_image, prune_old_images
from .inventory import _lab_proxy_url, write_inventory
from .network import ensure_network
from .settings import DISTROS, INVENTORY, LAB_DISTRO, LAB_NAME, LABEL, REPO
from .util import LabError, cname, docker, host_spec, log, wanted_hosts
from .vault import ensure_ssh_key, ensure_vault


def cmd_up(args):
    with lab_lock():
        _up(args)


def _up(args):
    t0 = time.time()
    specs = wanted_hosts(args.hosts)
    distro = LAB_DISTRO
    if distro not in DISTROS:
        raise LabError(f"LAB_DISTRO={distro}: choose one of {', '.join(DISTROS)}")
    ensure_vault()  # fail early without ansible-vault
    pubkey = ensure_ssh_key()
    cmd_engine()
    ensure_network()
    host_proxy, lab_proxy = ensure_cache()
    ref = ensure_image(distro, host_proxy)
    prune_old_images(distro)
    t1 = time.time()
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max(1, len(specs))) as ex:
        futs = {ex.submit(bring_up, s, ref, distro, pubkey, lab_proxy): s for s in specs}
        for f in concurrent.futures.as_completed(futs):
            try:
                f.result()
            except LabError as e:
                errors.append(str(e))
    write_inventory(lab_proxy)
    if errors:
        raise LabError("some hosts are not ready:\n" + "\n".join(errors))
    log(f"lab {LAB_NAME} up: {len(specs)} host(s) ready in {time.time() - t1:.0f} s "
        f"(total {time.time() - t0:.0f} s); inventory {os.path.relpath(INVENTORY, REPO)}")


def cmd_remove(args):
    with lab_lock():
        _remove(args)


def _remove(args):
    for h in args.hosts:
        host_spec(h)
        info = inspect_container(cname(h))
        if info and (info["Config"]["Labels"] or {}).get(LABEL) == LAB_NAME:
            log(f"removing {cname(h)}")
            docker("rm", "-f", "-v", cname(h))
    write_inventory(_lab_proxy_url())
