"""The edge path as a client sees it: HTTPS to the VIP with the service's name, verified
against Pebble's root (read from the lab services host; SSAI_E2E_CA_FILE overrides it),
and the edge tier's state (which edge host holds the VIP, the certificate served).
Traffic only to lab addresses, bounded in count and time."""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import time
from dataclasses import dataclass

import pytest

from labkit.hosts import group_hosts, host_address, lab_all_vars, lab_exec

# The path of the GET load and probes: public, cheap, served by Gunicorn.
READ_PATH = os.environ.get("SSAI_E2E_READ_PATH", "/api/v1/plans")
CA_BUNDLE = "/etc/letsencrypt/acme-ca-bundle.pem"


def pebble_root(inv: dict) -> str:
    """PEM of the CA that issued the edge certificate (Pebble's root, from svc1)."""
    ca_file = os.environ.get("SSAI_E2E_CA_FILE")
    if ca_file:
        return open(ca_file).read()
    svc = group_hosts(inv, "labsvc")
    if not svc:
        pytest.skip("no lab services host (Pebble) in the lab")
    # Pebble's management API listens on the services host's lab address (roles/lab_services).
    url = f"https://{host_address(inv, svc[0])}:15000/roots/0"
    res = lab_exec(inv, svc[0], "curl", "-sS", "--insecure", url, check=False)
    if res.returncode != 0 or "BEGIN CERTIFICATE" not in res.stdout:
        pytest.fail(f"cannot read Pebble's root from {svc[0]} ({url}): {res.stderr.strip()}")
    return res.stdout


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address (the VIP) with SNI/Host = the service's domain."""

    def __init__(self, address: str, domain: str, context: ssl.SSLContext, timeout: float):
        super().__init__(domain, 443, context=context, timeout=timeout)
        self._address = address
        self._ctx = context

    def connect(self):
        sock = socket.create_connection((self._address, 443), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Edge:
    """Client of the whole edge path: VIP → Nginx (TLS) → HAProxy → Gunicorn."""
    address: str
    domain: str
    context: ssl.SSLContext

    @classmethod
    def from_inventory(cls, inv: dict) -> Edge:
        allv = lab_all_vars(inv)
        ctx = ssl.create_default_context(cadata=pebble_root(inv))
        return cls(allv["lab_vip"], allv["socialsphere_domain"], ctx)

    def connection(self, timeout: float = 10.0) -> http.client.HTTPSConnection:
        return _PinnedHTTPS(self.address, self.domain, self.context, timeout)

    def request(self, path: str, method: str = "GET", body: bytes | str | None = None,
                headers: dict | None = None, timeout: float = 10.0) -> http.client.HTTPResponse:
        """One request on a new connection; the response, with its body read into resp.body."""
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers={"User-Agent": "ssai-e2e", **(headers or {})})
            resp = conn.getresponse()
            resp.body = resp.read()
            return resp
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        resp = self.request(path, timeout=timeout)
        return resp.status, resp.body


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


def certbot_renew(inv: dict, host: str) -> None:
    """certbot renew --force-renewal on an edge host; a run that Pebble failed with
    badNonce is run again. Pebble rejects 5 % of nonces on purpose
    (lab_services_pebble_nonce_reject_percent) and certbot retries a rejected nonce once,
    so about one renewal in fifty fails with a second badNonce in a row; in production
    the next certbot.timer run (twice a day) is that retry. Any other failure fails the
    test at once."""
    for attempt in range(3):
        res = lab_exec(inv, host, "env", f"REQUESTS_CA_BUNDLE={CA_BUNDLE}", "certbot", "renew",
                       "--force-renewal", "--no-random-sleep-on-renew", check=False, timeout=180)
        out = res.stdout + res.stderr
        if res.returncode == 0 or "badNonce" not in out:
            break
        print(f"{host}: renewal attempt {attempt + 1} failed with badNonce; running it again")
    assert res.returncode == 0, out


def wait_serial_change(edge: Edge, before: str, timeout: float = 20.0) -> str:
    """The serial the VIP serves once it is no longer `before` (certbot's deploy hook
    reloads Nginx, whose new workers take over a moment later); `before` on timeout."""
    deadline = time.monotonic() + timeout
    serial = served_serial(edge)
    while serial == before and time.monotonic() < deadline:
        time.sleep(0.5)
        serial = served_serial(edge)
    return serial


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
