"""The generated inventory (`labctl inventory`, written by every up/add/remove):
inventories/lab/hosts.yml, or hosts-<LAB_NAME>.yml for another lab, and
inventories/lab/group_vars/all/deploy_key.yml (the deploy user's authorized keys
and the key the control node connects with: the lab's .lab/id_ed25519)."""

import json
import os
import re

from .cache import _acng_pid, _port_open
from .containers import lab_containers
from .settings import (
    CACHE_PORT,
    DEPLOY_KEY_VARS,
    GATEWAY,
    GENERATED_MARK,
    GROUP_ORDER,
    INV_DIR,
    INVENTORY,
    LAB_NAME,
    LAB_SUBNET,
    NETWORK,
    SSH_KEY,
    VIP,
)
from .util import host_spec


def _lab_proxy_url():
    ext = os.environ.get("LAB_APT_PROXY")
    if ext is not None:
        return None if ext.lower() in ("", "off", "none") else ext
    pid, _ = _acng_pid()
    if pid or _port_open("127.0.0.1", CACHE_PORT):
        return f"http://{GATEWAY}:{CACHE_PORT}"
    return None


def host_vars(host):
    spec = host_spec(host)
    kind = re.match(r"[a-z]+", host).group(0)
    hv = {"ansible_host": spec["ip"]}
    if kind == "db":
        hv["postgresql_role"] = "primary" if spec["n"] == 1 else "replica"
    if kind == "backup":
        hv["pgbackrest_repo"] = spec["n"]  # backupN holds pgBackRest repository N
    if kind == "edge":
        hv["keepalived_priority"] = max(1, 150 - 50 * (spec["n"] - 1))
    return hv


def write_inventory(lab_proxy):
    hosts = [h for h, _info in lab_containers()]
    by_group = {g: [] for g in GROUP_ORDER}
    for h in hosts:
        by_group[host_spec(h)["group"]].append(h)
    q = json.dumps  # JSON strings are valid YAML scalars
    out = [
        f"{GENERATED_MARK} (`labctl up`): do not edit, it is rewritten.",
        f"# Lab {LAB_NAME}: Docker network {NETWORK} {LAB_SUBNET}, gateway {GATEWAY};",
        f"# {VIP} is reserved for the keepalived VIP (lab_vip).",
        "---",
        "all:",
        "  vars:",
        "    ansible_user: deploy",
        "    # the deploy key (ansible_ssh_private_key_file): group_vars/all/deploy_key.yml",
        "    # lab only: hosts are recreated with new host keys",
        "    ansible_ssh_common_args: >-",
        "      -o StrictHostKeyChecking=no",
        "      -o UserKnownHostsFile=/dev/null",
        "    # (Mitogen's SSH checks host keys on its own terms: off here too)",
        "    ansible_host_key_checking: false",
        "    ansible_python_interpreter: /usr/bin/python3",
        f"    lab_name: {q(LAB_NAME)}",
        f"    lab_vip: {VIP}",
        f"    lab_network_cidr: {LAB_SUBNET}",
        f"    lab_gateway: {GATEWAY}",
        f"    common_apt_proxy: {q(lab_proxy or '')}",
        "  children:",
    ]
    for g in GROUP_ORDER:
        out.append(f"    {g}:")
        if not by_group[g]:
            out.append("      hosts: {}")
            continue
        out.append("      hosts:")
        for h in sorted(by_group[g], key=lambda x: host_spec(x)["n"]):
            out.append(f"        {h}:")
            out += [f"          {k}: {v}" for k, v in host_vars(h).items()]
    # The group of compromised hosts (playbooks/isolate-host.yml): empty in the
    # lab; its drill adds a host through an inventory of its own.
    out += ["    isolated:", "      hosts: {}"]
    os.makedirs(INV_DIR, exist_ok=True)
    tmp = INVENTORY + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, INVENTORY)
    write_deploy_key_vars()


def write_deploy_key_vars():
    """group_vars/all/deploy_key.yml: the lab's key, the one labctl itself logs in with
    (bootstrap, wait_ssh). The rotation drill edits it and puts it back byte for byte.
    Without the key (`labctl inventory` before any `up`) there is nothing to write."""
    if not os.path.exists(SSH_KEY + ".pub"):
        return
    with open(SSH_KEY + ".pub") as f:
        pubkey = f.read().strip()
    q = json.dumps
    out = [
        f"{GENERATED_MARK} (`labctl up`): the lab's deploy key, rewritten by every up.",
        "# One source of the deploy user's authorized keys (roles/common through",
        "# common_admin_users in vars.yml); rotation: docs/runbooks/rotate-secrets.md.",
        "---",
        "deploy_authorized_keys:",
        f"  - {q(pubkey)}",
        f"ansible_ssh_private_key_file: {q(SSH_KEY)}",
    ]
    os.makedirs(os.path.dirname(DEPLOY_KEY_VARS), exist_ok=True)
    tmp = DEPLOY_KEY_VARS + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, DEPLOY_KEY_VARS)


def cmd_inventory(_args):
    write_inventory(_lab_proxy_url())
    print(INVENTORY)
