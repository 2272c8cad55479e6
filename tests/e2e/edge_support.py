"""Edge-tier helpers for the end-to-end tests (VIP holder, served certificate,
Pebble's trust anchor). Traffic only to lab addresses, bounded in count and time."""
from __future__ import annotations

import socket
import ssl
import time

from test_app_support import Edge, group_hosts, host_address, lab_all_vars, lab_exec

CA_BUNDLE = "/etc/letsencrypt/acme-ca-bundle.pem"


def vip(inv: dict) -> str:
    return lab_all_vars(inv)["lab_vip"]


def domain(inv: dict) -> str:
    return lab_all_vars(inv)["socialsphere_domain"]


def vip_holder(inv: dict) -> str | None:
    address = vip(inv)
    for host in group_hosts(inv, "edge"):
        out = lab_exec(inv, host, "ip", "-4", "-o", "addr", "show", check=False).stdout
        if f" {address}/" in out:
            return host
    return None


def wait_vip_holder(inv: dict, want: str | None = None, timeout: float = 60) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder = vip_holder(inv)
        if holder and (want is None or holder == want):
            return holder
        time.sleep(0.5)
    return None


def served_certificate(edge: Edge) -> dict:
    """The certificate Nginx serves on the VIP (verified against Pebble's root)."""
    with socket.create_connection((edge.address, 443), timeout=5) as sock:
        with edge.context.wrap_socket(sock, server_hostname=edge.domain) as tls:
            return tls.getpeercert()


def served_serial(edge: Edge) -> str:
    return served_certificate(edge)["serialNumber"]


def probe(edge: Edge, path: str, timeout: float = 2.0) -> int | None:
    """One GET on a fresh connection; the status, or None on any error."""
    try:
        conn = edge.connection(timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "ssai-e2e-probe"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()
    except (OSError, ssl.SSLError, Exception):  # noqa: BLE001 - any error is a failed probe
        return None


__all__ = ["CA_BUNDLE", "Edge", "group_hosts", "host_address", "lab_exec", "vip", "domain",
           "vip_holder", "wait_vip_holder", "served_certificate", "served_serial", "probe"]
