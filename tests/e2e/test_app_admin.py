"""The lab's admin account exists and works, as `make lab` promises at its end:
log in through the edge VIP as socialsphere_admin_email with the password that
`make lab-admin-password` prints, then use the admin panel's API (list users,
find the account itself with role admin) and load the admin page.

The account is ensured by the app role after the migrations
(roles/socialsphere_app/tasks/admin.yml, `flask ensure-admin`). Traffic goes only
to the lab's VIP."""
from __future__ import annotations

import json
import subprocess

from labkit.edge import Edge
from labkit.hosts import lab_all_vars
from labkit.inventory import REPO


def _request(edge: Edge, method: str, path: str, body: dict | None = None, token: str = ""):
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = edge.request(path, method, None if body is None else json.dumps(body), headers)
    return resp.status, resp.body


def test_the_lab_admin_logs_in_through_the_vip_and_uses_the_admin_api(lab_inventory):
    email = lab_all_vars(lab_inventory)["socialsphere_admin_email"]
    printed = subprocess.run(["make", "-s", "--no-print-directory", "lab-admin-password"], cwd=REPO,
                             capture_output=True, text=True, timeout=300, check=True).stdout.strip()
    password = printed.splitlines()[-1].strip()
    assert len(password) >= 10, "make lab-admin-password printed no password"
    edge = Edge.from_inventory(lab_inventory)

    status, body = _request(edge, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert status == 200, (status, body[:300])
    token = json.loads(body)["access_token"]

    status, body = _request(edge, "GET", f"/api/v1/admin/users?q={email}", token=token)
    assert status == 200, (status, body[:300])
    rows = json.loads(body)["items"]
    me = [u for u in rows if u.get("email") == email]
    assert me and me[0].get("role") == "admin", rows

    status, page = _request(edge, "GET", "/admin")
    assert status == 200, status
    assert b"<html" in page.lower()[:2000], page[:200]

    # A wrong password is refused (the account is not open to anyone).
    status, _ = _request(edge, "POST", "/api/v1/auth/login", {"email": email, "password": password + "x"})
    assert status == 401, status
