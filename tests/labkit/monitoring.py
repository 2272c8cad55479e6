"""The monitoring host's Prometheus and Alertmanager as the tests ask them: from the
monitoring host itself (they listen on its private address, closed to every other
host), through `docker exec ... curl`. Traffic stays on lab addresses."""
from __future__ import annotations

import json
import urllib.parse

import pytest

from labkit.hosts import group_hosts, host_address, lab_exec


class Monitoring:
    def __init__(self, inv: dict):
        self.inv = inv
        mon = group_hosts(inv, "monitoring")
        if not mon:
            pytest.skip("no monitoring host in the lab")
        self.host = mon[0]
        self.addr = host_address(inv, self.host)

    def get(self, port: int, path: str, **params) -> dict:
        url = f"http://{self.addr}:{port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        res = lab_exec(self.inv, self.host, "curl", "-fsS", "--max-time", "20", url, check=False, timeout=40)
        assert res.returncode == 0, f"GET {url} on {self.host}: {res.stderr.strip()}"
        return json.loads(res.stdout)

    def query(self, expr: str) -> list[dict]:
        data = self.get(9090, "/api/v1/query", query=expr)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def alerts(self, name: str, host: str) -> list[dict]:
        """Alertmanager's alerts of that name about that host (every rule labels
        the host it is about as `host`): active, suppressed (inhibited) or not."""
        return self.get(9093, "/api/v2/alerts", filter=[f'alertname="{name}"', f'host="{host}"'])
