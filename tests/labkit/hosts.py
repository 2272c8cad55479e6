"""Commands on lab hosts: `docker exec` into a lab container (lab_exec, like `labctl
exec`), or the way Ansible reaches a host of any inventory (remote_command: docker
connection, else ssh as ansible_user with sudo; the database drills' way); labctl on the
lab of the inventory; a host destroyed for a disaster drill."""
from __future__ import annotations

import json
import os
import shlex
import subprocess

from labkit.inventory import INVENTORY, REPO


def lab_all_vars(inv: dict) -> dict:
    hostvars = inv["_meta"]["hostvars"]
    return hostvars[next(iter(hostvars))]


def group_hosts(inv: dict, group: str) -> list[str]:
    return list(inv.get(group, {}).get("hosts", []))


def host_address(inv: dict, host: str) -> str:
    return inv["_meta"]["hostvars"][host]["ansible_host"]


def container(inv: dict, host: str) -> str:
    """The Docker container of a lab host."""
    return f"{lab_all_vars(inv).get('lab_name', 'ssai')}-{host}"


def lab_exec(inv: dict, host: str, *cmd: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    """Run a command in a lab container (docker exec, like `labctl exec`)."""
    return subprocess.run(["docker", "exec", container(inv, host), *cmd], capture_output=True, text=True,
                          check=check, timeout=timeout)


def remote_command(hostvars: dict, address: str, cmd: str) -> list[str]:
    """The argument list that runs the shell command `cmd` as root on a host the way
    Ansible reaches it: `docker exec` for the docker connection, else ssh as
    ansible_user (key from ansible_ssh_private_key_file) with sudo. `hostvars`: the
    host's variables; `address`: its resolved ansible_host."""
    if "docker" in str(hostvars.get("ansible_connection", "")):
        name = hostvars.get("ansible_docker_host") or hostvars.get("ansible_host") or address
        return ["docker", "exec", name, "bash", "-c", cmd]
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
           "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"]
    if hostvars.get("ansible_ssh_private_key_file"):
        ssh += ["-i", hostvars["ansible_ssh_private_key_file"]]
    return ssh + [f"{hostvars.get('ansible_user', 'root')}@{address}", "sudo bash -c " + shlex.quote(cmd)]


def fail2ban_banned(inv: dict, host: str, jail: str) -> list[str]:
    """Addresses a fail2ban jail on a lab host bans right now."""
    status = lab_exec(inv, host, "fail2ban-client", "status", jail).stdout
    for line in status.splitlines():
        if "Banned IP list:" in line:
            return line.split("Banned IP list:")[1].split()
    return []


def running_states(inv: dict) -> dict[str, dict]:
    """What each app host's Gunicorn runs with: the role's own reader
    (roles/socialsphere_app/files/running-state.py; key ids and user names, no secret)."""
    script = (REPO / "roles" / "socialsphere_app" / "files" / "running-state.py").read_text()
    states = {}
    for host in group_hosts(inv, "app"):
        res = lab_exec(inv, host, "python3", "-c", script, "/etc/socialsphere/socialsphere.env",
                       "socialsphere.service", "/srv/socialsphere")
        states[host] = json.loads(res.stdout)
    return states


def labctl(inv: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run lab/labctl on the lab of this inventory (LAB_NAME/LAB_SUBNET from its variables)."""
    allv = lab_all_vars(inv)
    env = dict(os.environ, LAB_NAME=allv["lab_name"], LAB_SUBNET=allv["lab_network_cidr"],
               LAB_INVENTORY=str(INVENTORY))
    return subprocess.run([str(REPO / "lab" / "labctl"), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def destroy(inv: dict, host: str) -> None:
    """The machine is gone: its container removed (a disaster drill's first step)."""
    subprocess.run(["docker", "rm", "-f", container(inv, host)], check=False, capture_output=True)
    gone = subprocess.run(["docker", "inspect", container(inv, host)], check=False, capture_output=True)
    assert gone.returncode != 0, f"{host} still exists"
