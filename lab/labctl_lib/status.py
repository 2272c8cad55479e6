"""Looking at and into the lab: `labctl status`, `info`, `secret`, `ssh`, `exec`,
and `stop` (power a host off for failure drills)."""

import os
import re
import socket
import sys

from .cache import ACNG_DIR, _acng_pid
from .containers import inspect_container, lab_containers, ssh_cmd, systemd_state
from .engine import docker_ok
from .settings import INV_DIR, INVENTORY, LAB_NAME, LAB_SUBNET, LABEL, NETWORK, REPO, SSH_KEY, VAULT, VAULT_PASS, VIP
from .util import LabError, cname, docker, host_spec, log, run
from .vault import _parse_vault_yaml, ansible_vault_bin


def _memory_mib(cid):
    """Memory use of a container from its cgroup (v1 or v2), or "?"."""
    for path in (f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes",
                 f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current",
                 f"/sys/fs/cgroup/docker/{cid}/memory.current"):
        try:
            with open(path) as f:
                return f"{int(f.read()) // 1048576}M"
        except (OSError, ValueError):
            continue
    return "?"


def cmd_status(_args):
    if not docker_ok():
        print("docker engine: not running")
        return
    rows = [("HOST", "ADDRESS", "GROUP", "CONTAINER", "SYSTEMD", "MEMORY", "IMAGE")]
    for host, info in lab_containers():
        labels = info["Config"]["Labels"]
        running = info["State"]["Running"]
        rows.append((host, labels.get("ssai.lab.ip", "?"), labels.get("ssai.lab.group", "?"),
                     info["State"]["Status"],
                     systemd_state(info["Name"].lstrip("/")) if running else "-",
                     _memory_mib(info["Id"]) if running else "-",
                     info["Config"]["Image"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
    pid, _ = _acng_pid()
    print(f"\nnetwork {NETWORK} {LAB_SUBNET}  VIP {VIP} (reserved)  package cache: "
          + (f"apt-cacher-ng pid {pid}, {ACNG_DIR}" if pid else "not running"))
    if len(rows) == 1:
        print(f"lab {LAB_NAME} is not up")


def cmd_ssh(args):
    spec = host_spec(args.host)
    os.execvp("ssh", ssh_cmd(spec["ip"], *args.cmd))


def cmd_stop(args):
    """Power a host off (failure drills); `labctl start HOST` powers it on again."""
    for h in args.hosts:
        host_spec(h)
        info = inspect_container(cname(h))
        if not info or (info["Config"]["Labels"] or {}).get(LABEL) != LAB_NAME:
            raise LabError(f"{h} is not a host of lab {LAB_NAME}")
        log(f"stopping {h} (its state is kept; `labctl start {h}` brings it back)")
        docker("stop", cname(h))


def cmd_exec(args):
    host_spec(args.host)
    tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
    os.execvp("docker", ["docker", "exec", "-i", *tty, cname(args.host), *args.cmd])


def _lab_setting(name, default=""):
    """A scalar from the committed lab settings (inventories/lab/group_vars/all/vars.yml)."""
    try:
        with open(os.path.join(INV_DIR, "group_vars", "all", "vars.yml")) as f:
            for line in f:
                m = re.match(rf"^{re.escape(name)}:\s*['\"]?([^'\"#\s]+)", line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return default


def _https_status(ip, domain, path, timeout=5):
    """HTTP status of https://<domain><path> sent to <ip> (SNI and Host = domain), or None.

    Only a readiness probe for the summary: the certificate comes from the lab's
    Pebble, whose root this machine does not trust, so it is not verified here
    (the end-to-end tests verify the chain against Pebble's root)."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((ip, 443), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=domain) as tls:
            tls.settimeout(timeout)
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
            head = tls.recv(64).decode("latin-1")
    except OSError:
        return None
    m = re.match(r"HTTP/1\.[01] (\d{3})", head)
    return int(m.group(1)) if m else None


def cmd_info(_args):
    """Where the app answers (probed now, not assumed) and how to log in."""
    hosts = lab_containers() if docker_ok() else []
    if not hosts:
        print(f"lab {LAB_NAME} is not up: run `make lab`")
        return
    domain = _lab_setting("socialsphere_domain", "socialsphere.lab")
    admin = _lab_setting("socialsphere_admin_email", "")
    edges = [(h, i["Config"]["Labels"].get("ssai.lab.ip")) for h, i in hosts
             if i["Config"]["Labels"].get("ssai.lab.group") == "edge"]

    def ready(ip):
        code = _https_status(ip, domain, "/readyz")
        return "ready (/readyz 200)" if code == 200 else f"NOT ready (/readyz: {code or 'no answer'})"

    rel_inv = os.path.relpath(INVENTORY, REPO)
    rel_pass = os.path.relpath(VAULT_PASS, REPO)
    print(f"""
SocialSphere AI lab '{LAB_NAME}': {len(hosts)} hosts on {NETWORK} {LAB_SUBNET} (lab/labctl status)

  App      https://{domain}/  via the edge VIP {VIP}: {ready(str(VIP))}""")
    for h, ip in edges:
        print(f"           {h} {ip}: {ready(ip)}")
    print(f"""           from this machine: curl -k --resolve {domain}:443:{VIP} https://{domain}/healthz
           (the certificate comes from the lab's ACME server, Pebble, on svc1; the e2e tests
            verify the chain against its root; for a browser add `{VIP} {domain}` to /etc/hosts)
  Admin    https://{domain}/admin  as {admin or '(socialsphere_admin_email)'}
           password: make lab-admin-password  (= lab/labctl secret vault_app_admin_password)
  SSH      lab/labctl ssh <host>  (deploy@<address>, key {os.path.relpath(SSH_KEY, REPO)})
  Ansible  ansible-playbook -i {rel_inv} --vault-password-file {rel_pass} playbooks/site.yml
           (make lab-deploy: site.yml again, changed=0; make lab-down removes the lab)
  Secrets  ansible-vault view --vault-password-file {rel_pass} {os.path.relpath(VAULT, REPO)}
""")


def cmd_secret(args):
    """Print one lab secret (explicit request only; lab secrets are per machine)."""
    if not os.path.exists(VAULT):
        raise LabError("no lab vault yet: run `labctl up`")
    p = run([ansible_vault_bin(), "view", "--vault-password-file", VAULT_PASS, VAULT], quiet=True)
    values = _parse_vault_yaml(p.stdout)
    if args.name not in values:
        raise LabError(f"no {args.name} in the lab vault; names: {', '.join(values)}")
    print(values[args.name])
