"""The maintenance page and the contract rule in the lab (issue 13 item 2), in file order:

1. `fab maintenance on`: the VIP answers 503 with Retry-After, the HTML page for a browser
   path and `{"error": "maintenance", ...}` under /api/, /readyz still reaches the app,
   `fab status` says the page is on; `certbot renew --force-renewal` on the VIP holder
   still passes its HTTP-01 challenge and Nginx serves the new certificate with the page
   still on; `fab maintenance off`: 200 again;
2. a release with a contract migration (a clone of this checkout plus one migration
   marked `contract = True`, built with scripts/build-release into dist/) is refused by
   `fab deploy` without --contract, naming the revision and the flag; nothing changed
   (the same release current everywhere, the deploy lock free, no deploy log line);
3. `fab deploy --contract` deploys it; a watcher through the VIP sees ok -> maintenance ->
   ok and nothing else (the seconds of each phase are printed); the page is off after;
4. `fab rollback` back across it is refused the same way; `fab rollback --contract` goes
   back with the page around the switch (ok -> maintenance -> ok).

An autouse fixture turns the page off after each test. At the end the lab runs the
release it ran and the database is downgraded from the drill's revision with the
contract release's migrations (docs/runbooks/release.md, "Back across a contract
migration"). About 15 minutes on the lab (two release builds' worth of wheel
downloads on a cold pip cache); run with `make test-drills`.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from labkit.edge import Edge, certbot_renew, served_serial, vip_holder, wait_serial_change
from labkit.hosts import group_hosts, lab_exec
from labkit.inventory import REPO
from labkit.release import current_release, fab

ROOT = "/srv/socialsphere"
LOCK = f"{ROOT}/.deploy-lock"
DEPLOY_LOG = "/var/log/socialsphere/deploys.log"
FLAG = "/var/lib/nginx-maintenance/on"  # roles/nginx nginx_maintenance_flag
REVISION = "9001_e2e_contract"
DEPLOY_MAX_SECONDS = 3600


def apps(inv):
    return group_hosts(inv, "app")


def flat(text):
    return " ".join(text.split())


def page_on(inv):
    return {h: lab_exec(inv, h, "test", "-e", FLAG, check=False).returncode == 0 for h in group_hosts(inv, "edge")}


def log_lines(inv, host):
    return len(lab_exec(inv, host, "cat", DEPLOY_LOG, check=False).stdout.splitlines())


def database_revision(edge):
    status, body = edge.get("/readyz")
    return status, json.loads(body)["schema"]["database"]


def ok(res):
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    return res


def schema_head(repo):
    text = (repo / "app" / "socialsphere" / "schema.py").read_text()
    return re.search(r'^SCHEMA_HEAD\s*=\s*["\']([^"\']+)["\']', text, re.M).group(1)


def build_contract_release(tmp, stamp):
    """This checkout's committed app plus one migration marked contract (a table created,
    dropped by its downgrade), built into dist/; returns its version."""
    clone = tmp / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clone)], check=True, timeout=300)
    head = schema_head(clone)
    (clone / "app" / "migrations" / "versions" / f"{REVISION}.py").write_text(f'''"""e2e: a contract migration

Revision ID: {REVISION}
Revises: {head}

tests/e2e/test_release_maintenance.py: marked contract (not backward compatible), so
app.yml refuses to cross it without app_release_contract=true. Harmless: one table.
"""
from alembic import op
import sqlalchemy as sa


revision = "{REVISION}"
down_revision = "{head}"
branch_labels = None
depends_on = None
contract = True


def upgrade():
    op.create_table("e2e_contract_probe", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("e2e_contract_probe")
''')
    schema = clone / "app" / "socialsphere" / "schema.py"
    schema.write_text(schema.read_text().replace(f'SCHEMA_HEAD = "{head}"', f'SCHEMA_HEAD = "{REVISION}"'))
    assert schema_head(clone) == REVISION
    out = subprocess.run([sys.executable, str(clone / "scripts" / "build-release"), "--dist", str(REPO / "dist"),
                          "--version-suffix", f"e2econtract{stamp}"], cwd=clone, capture_output=True, text=True,
                         check=True, timeout=1800).stdout
    name = os.path.basename(out.strip().splitlines()[-1])
    return name.removeprefix("socialsphere-").removesuffix(".tar.gz"), head


class PhaseWatch:
    """GET /api/v1/plans through the VIP every 0.2 s: each answer is ok (200), maintenance
    (503 with the page's JSON) or other; consecutive answers of one kind make a phase."""

    def __init__(self, edge, interval=0.2):
        self.edge, self.interval = edge, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                status, body = self.edge.get("/api/v1/plans", timeout=5)
                if status == 200:
                    kind = "ok"
                elif status == 503 and json.loads(body or b"{}").get("error") == "maintenance":
                    kind = "maintenance"
                else:
                    kind = f"other ({status})"
            except (OSError, ValueError) as exc:
                kind = f"other ({type(exc).__name__})"
            self.samples.append((t, kind))
            self._stop.wait(self.interval)

    def phases(self):
        phases = []
        for t, kind in self.samples:
            if phases and phases[-1][0] == kind:
                phases[-1][2] = t
                phases[-1][3] += 1
            else:
                phases.append([kind, t, t, 1])
        return phases

    def report(self, what):
        origin = self.samples[0][0] if self.samples else 0
        for kind, start, end, count in self.phases():
            print(f"{what}: {kind:12} from {start - origin:6.1f}s to {end - origin:6.1f}s "
                  f"({end - start:5.1f}s, {count} answers)")
        return [p[0] for p in self.phases()]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(1)
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def releases(lab_inventory, tmp_path_factory):
    inv = lab_inventory
    running = {current_release(inv, h) for h in apps(inv)}
    assert len(running) == 1, f"app hosts run different releases: {running}"
    original = running.pop()
    t0 = time.monotonic()
    contract, head = build_contract_release(tmp_path_factory.mktemp("contract"), time.strftime("%H%M%S"))
    print(f"contract release {contract} built in {time.monotonic() - t0:.0f}s (database head {head} -> {REVISION})")
    yield {"original": original, "contract": contract, "head": head}
    # Back to the release the lab ran, then the schema back to its head with the
    # contract release's migrations (the runbook's "Back across a contract migration").
    if {current_release(inv, h) for h in apps(inv)} != {original}:
        res = fab("rollback", "--version", original, "--contract", timeout=DEPLOY_MAX_SECONDS)
        print(f"back to {original}: fab exit {res.returncode}")
    edge = Edge.from_inventory(inv)
    if database_revision(edge)[1] == REVISION:
        release_dir = f"{ROOT}/releases/{contract}"
        res = lab_exec(inv, apps(inv)[0], "socialsphere-manage", "--release", release_dir, "--owner", "db",
                       "downgrade", "--directory", f"{release_dir}/migrations", head, check=False, timeout=300)
        print(f"downgrade to {head}: exit {res.returncode} {res.stderr[-500:]}")
        print(f"database now at {database_revision(edge)[1]}")


@pytest.fixture(autouse=True)
def page_off_after(lab_inventory):
    yield
    if any(page_on(lab_inventory).values()):
        res = fab("maintenance", "off")
        print(f"fab maintenance off after the test: exit {res.returncode}")


def test_the_maintenance_page_on_and_off(lab_inventory):
    inv = lab_inventory
    edge = Edge.from_inventory(inv)
    assert edge.get("/api/v1/plans")[0] == 200
    t0 = time.monotonic()
    res = ok(fab("maintenance", "on"))
    print(f"fab maintenance on: {time.monotonic() - t0:.1f}s")
    assert page_on(inv) == {h: True for h in group_hosts(inv, "edge")}

    resp = edge.request("/login")
    assert resp.status == 503
    assert resp.getheader("Retry-After") == "120"
    assert resp.getheader("Content-Type").startswith("text/html")
    assert b"Down for maintenance" in resp.body
    resp = edge.request("/api/v1/plans")
    assert resp.status == 503 and resp.getheader("Retry-After") == "120"
    assert resp.getheader("Content-Type").startswith("application/json")
    body = json.loads(resp.body)
    assert body["error"] == "maintenance" and body["message"], body
    # Monitoring's probe path still reaches the app behind the edge.
    status, database = database_revision(edge)
    assert status == 200 and database
    res = ok(fab("status"))
    assert "maintenance page: ON on every edge host" in res.stdout, res.stdout[-3000:]

    # Certbot renews with the page on: HTTP-01 over port 80, then its deploy hook
    # reloads Nginx, and the page (a file) survives the reload.
    holder = vip_holder(inv)
    before = served_serial(edge)
    t0 = time.monotonic()
    certbot_renew(inv, holder)
    after = wait_serial_change(edge, before)
    print(f"{holder}: certbot renew with the page on: {time.monotonic() - t0:.1f}s, serial {before} -> {after}")
    assert after != before
    assert edge.get("/api/v1/plans")[0] == 503

    t0 = time.monotonic()
    ok(fab("maintenance", "off"))
    print(f"fab maintenance off: {time.monotonic() - t0:.1f}s")
    assert not any(page_on(inv).values())
    assert edge.get("/api/v1/plans")[0] == 200
    assert edge.get("/login")[0] == 200
    assert "maintenance page: off" in ok(fab("status")).stdout


def test_a_contract_release_is_refused_without_the_flag(lab_inventory, releases):
    inv = lab_inventory
    before = {h: (current_release(inv, h), log_lines(inv, h)) for h in apps(inv)}
    res = fab("deploy", "--version", releases["contract"], timeout=DEPLOY_MAX_SECONDS)
    out = flat(res.stdout + res.stderr)
    print(out[-1500:])
    assert res.returncode != 0
    assert f"The deploy of {releases['contract']} is refused: it applies the contract migration(s) {REVISION}" in out
    assert "fab deploy --contract" in out and "Nothing was changed." in out
    assert {h: (current_release(inv, h), log_lines(inv, h)) for h in apps(inv)} == before
    for host in apps(inv):
        assert lab_exec(inv, host, "test", "-e", LOCK, check=False).returncode != 0, f"{host}: a lock is left"
    assert not any(page_on(inv).values())
    assert database_revision(Edge.from_inventory(inv))[1] == releases["head"]


def test_the_contract_release_deploys_behind_the_page(lab_inventory, releases):
    inv = lab_inventory
    edge = Edge.from_inventory(inv)
    with PhaseWatch(edge) as watch:
        time.sleep(2)
        t0 = time.monotonic()
        res = ok(fab("deploy", "--version", releases["contract"], "--contract", timeout=DEPLOY_MAX_SECONDS))
        print(f"fab deploy --contract: {time.monotonic() - t0:.0f}s")
        time.sleep(2)
    phases = watch.report("deploy --contract")
    assert phases == ["ok", "maintenance", "ok"], phases
    assert f"it applies the contract migration(s) {REVISION}" in flat(res.stdout)
    assert {current_release(inv, h) for h in apps(inv)} == {releases["contract"]}
    assert not any(page_on(inv).values())
    assert database_revision(edge) == (200, REVISION)


def test_a_rollback_across_the_contract_needs_the_flag_too(lab_inventory, releases):
    inv = lab_inventory
    edge = Edge.from_inventory(inv)
    res = fab("rollback", timeout=DEPLOY_MAX_SECONDS)
    out = flat(res.stdout + res.stderr)
    assert res.returncode != 0
    assert (f"The rollback of {releases['original']} is refused: the database has the contract migration(s) "
            f"{REVISION}") in out, out[-3000:]
    assert "fab rollback --contract" in out and "Nothing was changed." in out
    assert {current_release(inv, h) for h in apps(inv)} == {releases["contract"]}
    for host in apps(inv):
        assert lab_exec(inv, host, "test", "-e", LOCK, check=False).returncode != 0

    with PhaseWatch(edge) as watch:
        time.sleep(2)
        t0 = time.monotonic()
        ok(fab("rollback", "--contract", timeout=DEPLOY_MAX_SECONDS))
        print(f"fab rollback --contract: {time.monotonic() - t0:.0f}s")
        time.sleep(2)
    phases = watch.report("rollback --contract")
    assert phases == ["ok", "maintenance", "ok"], phases
    assert {current_release(inv, h) for h in apps(inv)} == {releases["original"]}
    assert not any(page_on(inv).values())
    # The schema stays where the contract release put it (a rollback does not migrate).
    assert database_revision(edge) == (200, REVISION)
