"""The app's database password rotated under load: the three phases of
docs/runbooks/rotate-secrets.md (the app's database password), each one
`scripts/db-password` edit of the lab vault and one run of playbooks/rotate-secrets.yml
-e rotate=db, while clients use the app through the edge VIP; 0 failed requests.

- A lab converged by an older version (the app hosts log in as socialsphere_app, the
  one login role then) is moved over first, under load: playbooks/db.yml (the login
  roles, pg_hba), phase switch (every host to socialsphere_app_a), phase retire
  (socialsphere_app loses its LOGIN). A lab converged by this version whose
  socialsphere_app can still log in gets that retire only.
- Then one whole rotation from the active login to the other one:
  prepare (new password on the idle login; nothing restarts, the hosts keep their
  login), switch (each app host drained in every HAProxy, restarted, on the new login),
  a retire refused while the hosts still use the old login (the vault's password was
  forgotten too early on purpose: nothing changes), retire, and retire again (changed=0).
- After each phase, the primary's pg_stat_activity says which login each app host's
  connections use (usename by client address): the old one until switch, the new
  one after it, and PostgreSQL itself says which roles can log in.

About 6 minutes. Leaves the lab on the other login (the vault and the database agree).
Prints the figures of each phase.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from labkit.edge import Edge
from labkit.haproxy import HaproxyWatch, assert_drained_and_up
from labkit.hosts import group_hosts, host_address, lab_exec, running_states
from labkit.inventory import INVENTORY, REPO, VAULT_PASS, lab_inventory_data, parse_recap, run_playbook
from labkit.load import LoadGenerator

GROUP = "socialsphere_app"
PHASE_MAX_SECONDS = 1800


# ---------------------------------------------------------------- helpers
def db_password(*args: str) -> str:
    """scripts/db-password on the lab vault (the operator's command); its output (no secret)."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "db-password"), "-i", str(INVENTORY),
                           "--vault-password-file", str(VAULT_PASS), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def vault_active() -> str:
    """The active login's role name, from `db-password status`."""
    line = db_password("status").strip().splitlines()[-1]
    match = re.search(rf"({GROUP}_[a-z0-9]+) \(active\)", line)
    assert match, line
    return match.group(1)


def rotate(phase: str) -> tuple[int, str, float]:
    """A phase of rotate-secrets.yml -e rotate=db, or ("db.yml") the db tier's converge."""
    t0 = time.monotonic()
    if phase == "db.yml":
        rc, out = run_playbook("db.yml", timeout=3000)
    else:
        rc, out = run_playbook("rotate-secrets.yml", "-e", "rotate=db", "-e", f"rotate_db_phase={phase}",
                               timeout=3000)
    return rc, out, time.monotonic() - t0


def running(inv: dict) -> dict[str, dict]:
    return running_states(inv)


def psql(inv: dict, host: str, sql: str, check: bool = True) -> subprocess.CompletedProcess:
    return lab_exec(inv, host, "runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                    "-d", "postgres", "-c", sql, check=check)


def primary(inv: dict) -> str:
    found = [h for h in group_hosts(inv, "db")
             if psql(inv, h, "SELECT pg_is_in_recovery()", check=False).stdout.strip() == "f"]
    assert len(found) == 1, f"primaries: {found}"
    return found[0]


def users_by_app_host(inv: dict) -> dict[str, dict[str, int]]:
    """{app host: {usename: connections}} of the application database on the primary."""
    out = psql(inv, primary(inv), "SELECT host(client_addr) || '|' || usename || '|' || count(*) FROM pg_stat_activity "
                                  "WHERE datname = 'socialsphere' AND client_addr IS NOT NULL "
                                  "GROUP BY client_addr, usename").stdout
    by_address = {host_address(inv, h): h for h in group_hosts(inv, "app")}
    found: dict[str, dict[str, int]] = {h: {} for h in group_hosts(inv, "app")}
    for line in out.split():
        address, user, count = line.split("|")
        if address in by_address:
            found[by_address[address]][user] = int(count)
    return found


def can_log_in(inv: dict) -> list[str]:
    """The app's roles that PostgreSQL lets log in or that have a password."""
    out = psql(inv, primary(inv), f"SELECT rolname FROM pg_authid WHERE rolname LIKE '{GROUP}%' "
                                  "AND (rolcanlogin OR rolpassword IS NOT NULL) ORDER BY 1").stdout
    return out.split()


def assert_connections_use(inv: dict, expected: str, during: str) -> dict:
    """Every app host's connections use `expected` only (a few seconds to settle: the
    readiness checks and the load keep each host's pool open)."""
    deadline = time.time() + 30
    while True:
        users = users_by_app_host(inv)
        if all(set(u) == {expected} for u in users.values()) or time.time() > deadline:
            break
        time.sleep(2)
    for host, found in users.items():
        assert set(found) == {expected}, f"{during}: {host}'s connections use {found}, not only {expected}"
    return users


def run_phase(inv: dict, edge: Edge, phase: str, figures: dict, restarts: bool, expect_user: str) -> str:
    """One phase under load through the VIP; 0 failed requests; each app host drained
    and restarted when `restarts`, else left alone; connections by user afterwards."""
    apps = group_hosts(inv, "app")
    pids = {h: s["pid"] for h, s in running(inv).items()}
    with HaproxyWatch(inv) as watch, LoadGenerator(edge, max_seconds=PHASE_MAX_SECONDS) as load:
        time.sleep(3)
        rc, out, seconds = rotate(phase)
        time.sleep(3)
        users = assert_connections_use(inv, expect_user, f"after {phase}") if rc == 0 else {}
    recap = parse_recap(out)
    figures.append(f"{phase}: {seconds:.0f}s, {load.result.summary()}; changed "
                   f"{ {h: c['changed'] for h, c in recap.items() if c['changed']} }; connections by user {users}")
    print(figures[-1])
    assert rc == 0, out[-6000:]
    assert not load.ran_out
    assert load.result.total > 100 and load.result.failed == 0, load.result.summary()
    after = {h: s for h, s in running(inv).items()}
    for host in apps:
        assert after[host]["db_user"] == expect_user and after[host]["env_db_user"] == expect_user, (host, after[host])
        if restarts:
            assert after[host]["pid"] != pids[host], f"{host}: Gunicorn was not restarted in {phase}"
        else:
            assert after[host]["pid"] == pids[host], f"{host}: Gunicorn was restarted in {phase}"
    if restarts:
        assert_drained_and_up(inv, watch, apps, phase)
    return out


# ---------------------------------------------------------------- the drill
@pytest.fixture(scope="module")
def lab(lab_inventory):
    inv = lab_inventory_data()  # fresh: an earlier drill may have added an app host (scale-out)
    vault_text = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-vault"), "view", "--vault-password-file",
                                 str(VAULT_PASS), str(INVENTORY.parent / "group_vars" / "all" / "vault.yml")],
                                capture_output=True, text=True, check=True).stdout
    if "vault_postgresql_app_logins:" not in vault_text:
        pytest.fail("the lab vault has no vault_postgresql_app_logins (a lab of an older version): `make lab-up` "
                    "(lab/labctl up) adds it, keeping every other secret")
    states = running(inv)
    for host, state in states.items():
        assert state["running"], f"{host}: socialsphere.service does not run ({state})"
    releases = {s["release"] for s in states.values()}
    assert len(releases) == 1, f"app hosts run different releases: {releases}"
    release = releases.pop()
    if not (REPO / "dist" / f"socialsphere-{release}.tar.gz").is_file():
        pytest.fail(f"dist/socialsphere-{release}.tar.gz (the release the app hosts run) is missing: phase switch "
                    "rolls out through playbooks/app.yml, which deploys it; build it (scripts/build-release)")
    return {"inv": inv, "edge": Edge.from_inventory(inv), "states": states}


def test_db_password_rotation_under_load_fails_no_request(lab):
    inv, edge = lab["inv"], lab["edge"]
    figures: list[str] = []
    users = {s["db_user"] for s in lab["states"].values()}

    # ---- a lab of an older version: every host onto the active login, then the old role loses LOGIN
    if GROUP in users:
        active = vault_active()
        print(f"moving the app hosts from {GROUP} (an older version's login role) to {active}")
        run_phase(inv, edge, "db.yml", figures, restarts=False, expect_user=GROUP)
        assert active in can_log_in(inv) and GROUP in can_log_in(inv)
        run_phase(inv, edge, "switch", figures, restarts=True, expect_user=active)
        assert GROUP in can_log_in(inv)  # the converge and switch never took its LOGIN away
        run_phase(inv, edge, "retire", figures, restarts=False, expect_user=active)
    elif GROUP in can_log_in(inv):
        run_phase(inv, edge, "retire", figures, restarts=False, expect_user=vault_active())
    old = vault_active()
    assert {s["db_user"] for s in running(inv).values()} == {old}
    assert can_log_in(inv) == [old], can_log_in(inv)

    # ---- prepare: a new password on the idle login; the hosts keep theirs
    out = db_password("prepare")
    new = re.search(rf"a new password for ({GROUP}_[a-z0-9]+)", out).group(1)
    run_phase(inv, edge, "prepare", figures, restarts=False, expect_user=old)
    assert can_log_in(inv) == sorted([old, new])
    rc, out, _ = rotate("prepare")  # again: nothing changes
    assert rc == 0 and all(c["changed"] == 0 for c in parse_recap(out).values()), out[-3000:]

    # ---- the vault forgets the old login too early: retire is refused, nothing changes
    db_password("switch")
    db_password("retire")
    pids = {h: s["pid"] for h, s in running(inv).items()}
    rc, out, _ = rotate("retire")
    assert rc != 0 and f"Refusing to retire {old}" in out and "Finish phase switch first" in out, out[-4000:]
    assert all(c["changed"] == 0 for c in parse_recap(out).values()), parse_recap(out)
    assert {h: s["pid"] for h, s in running(inv).items()} == pids
    assert can_log_in(inv) == sorted([old, new])
    figures.append("retire before switch: refused, changed=0")

    # ---- switch: every host drained, restarted on the new login, back
    run_phase(inv, edge, "switch", figures, restarts=True, expect_user=new)

    # ---- retire: the old login can no longer log in
    run_phase(inv, edge, "retire", figures, restarts=False, expect_user=new)
    assert can_log_in(inv) == [new]
    pids = {h: s["pid"] for h, s in running(inv).items()}
    rc, out, seconds = rotate("retire")
    assert rc == 0, out[-4000:]
    recap = parse_recap(out)
    assert recap and all(c["changed"] == 0 for c in recap.values()), recap
    assert {h: s["pid"] for h, s in running(inv).items()} == pids
    figures.append(f"retire again: {seconds:.0f}s, changed=0")

    print(f"database password rotation {old} -> {new}")
    for line in figures:
        print(" ", line)
