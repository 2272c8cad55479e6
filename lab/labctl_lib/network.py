"""The lab's Docker network: bridge, LAB_SUBNET, gateway .1, labelled ssai.lab=<LAB_NAME>."""

import json

from .settings import GATEWAY, LAB_NAME, LAB_SUBNET, LABEL, NETWORK, VIP
from .util import LabError, docker, log


def ensure_network():
    p = docker("network", "inspect", NETWORK, check=False)
    if p.returncode == 0:
        info = json.loads(p.stdout)[0]
        if (info.get("Labels") or {}).get(LABEL) != LAB_NAME:
            raise LabError(f"network {NETWORK} exists but is not labelled {LABEL}={LAB_NAME}; "
                           "refusing to use or touch it (set LAB_NAME)")
        subnets = [c.get("Subnet") for c in info["IPAM"]["Config"] or []]
        if str(LAB_SUBNET) not in subnets:
            raise LabError(f"network {NETWORK} has subnet {subnets}, LAB_SUBNET is "
                           f"{LAB_SUBNET}: run `labctl down` first")
        return
    # Docker hands out dynamic addresses only from the upper half; the lab's fixed
    # addresses and the keepalived VIP live in the lower half.
    dyn = list(LAB_SUBNET.subnets(prefixlen_diff=1))[1]
    log(f"creating network {NETWORK} {LAB_SUBNET} (gateway {GATEWAY}, VIP {VIP} reserved)")
    docker("network", "create", "--driver", "bridge", "--subnet", str(LAB_SUBNET),
           "--gateway", str(GATEWAY), "--ip-range", str(dyn),
           "--label", f"{LABEL}={LAB_NAME}", NETWORK)
