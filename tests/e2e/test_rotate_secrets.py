"""JWT signing key rotation under load: the three phases of docs/runbooks/rotate-secrets.md,
each one `scripts/jwt-keys` edit of the lab vault and one run of playbooks/rotate-secrets.yml,
while clients use the app through the edge VIP; 0 failed requests.

- A user logged in before the rotation holds an access token signed with the old key; a
  constant load (LoadGenerator on GET /api/v1/auth/me) sends it. Its requests succeed
  through phase add and phase activate (a fresh old-key token per phase, so a phase longer
  than the token lifetime cannot fail it by expiry) and after them.
- A second session refreshes its tokens all the time (POST /api/v1/auth/refresh, then GET
  /me with the new access token, round-robin over the app hosts): during phase activate
  some hosts sign with the new key while others still sign with the old one, and every
  host must accept what any other signs.
- New logins get tokens whose header kid is the old key after phase add and the new key
  after phase activate and phase retire.
- Retiring right after phase activate is refused (the old key's tokens are still valid)
  with nothing changed; the drill waits the time the refusal names (the access-token
  lifetime, 900 s in the lab, + 60 s), then retires under load. Running phase retire
  again changes nothing.
- Each phase restarts every app host's Gunicorn (new MainPID) after draining it in every
  HAProxy (seen DRAIN there: HAProxy's retries are on in the lab, so 0 failed requests
  alone would not prove the drain).

About 25 minutes, most of it the wait before phase retire. Leaves the lab with one new
key (the vault and every app host agree). Prints the figures of each phase.
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from labkit.edge import Edge
from labkit.haproxy import HaproxyWatch, assert_drained_and_up
from labkit.hosts import group_hosts, lab_all_vars, running_states
from labkit.inventory import INVENTORY, REPO, VAULT_PASS, lab_inventory_data, parse_recap, run_playbook
from labkit.load import LoadGenerator

PHASE_MAX_SECONDS = 1800  # load bound per phase (a phase takes a few minutes)
ME = "/api/v1/auth/me"


# ---------------------------------------------------------------- helpers
def jwt_keys(*args: str) -> str:
    """scripts/jwt-keys on the lab vault (the operator's command); its output (no secrets)."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "jwt-keys"), "-i", str(INVENTORY),
                           "--vault-password-file", str(VAULT_PASS), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def vault_kids() -> tuple[list[str], str]:
    """(kids, signing kid) in the lab vault, from `jwt-keys status`."""
    line = jwt_keys("status").strip().splitlines()[-1]
    kids = line.split(": kids ", 1)[1].split(", ")
    active = [k.removesuffix(" (signing)") for k in kids if k.endswith(" (signing)")]
    return [k.removesuffix(" (signing)") for k in kids], active[0] if active else ""


def rotate(phase: str, *extra: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    rc, out = run_playbook("rotate-secrets.yml", "-e", "rotate=jwt", "-e", f"rotate_jwt_phase={phase}", *extra,
                           timeout=3000)
    return rc, out, time.monotonic() - t0


def running(inv: dict) -> dict[str, dict]:
    return running_states(inv)


def _segment(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def kid_of(token: str) -> str:
    return _segment(token, 0)["kid"]


def expires_at(token: str) -> float:
    return float(_segment(token, 1)["exp"])


def lifetime(token: str) -> float:
    claims = _segment(token, 1)
    return float(claims["exp"]) - float(claims["iat"])


def call(edge: Edge, method: str, path: str, body: dict | None = None, token: str = "") -> tuple[int, dict]:
    headers = {"Accept": "application/json", "User-Agent": "ssai-e2e-rotate"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = edge.request(path, method, None if body is None else json.dumps(body), headers)
    try:
        return resp.status, json.loads(resp.body or b"{}")
    except ValueError:
        return resp.status, {"raw": resp.body[:200].decode("utf-8", "replace")}


class Session:
    """One login of the lab admin: an access token and the rotating refresh token."""

    def __init__(self, edge: Edge, email: str, password: str):
        self.edge = edge
        status, body = call(edge, "POST", "/api/v1/auth/login", {"email": email, "password": password})
        assert status == 200, (status, body)
        self.access, self.refresh_token = body["access_token"], body["refresh_token"]

    def refresh(self) -> tuple[int, dict]:
        status, body = call(self.edge, "POST", "/api/v1/auth/refresh", {"refresh_token": self.refresh_token})
        if status == 200:
            self.access, self.refresh_token = body["access_token"], body["refresh_token"]
        return status, body


class Churn:
    """A client that refreshes its token all the time and uses each new one at once
    (POST /auth/refresh, then GET /me `uses` times: round-robin over the app hosts), in
    a background thread, bounded in time. Any status but 200 or any error fails."""

    def __init__(self, session: Session, uses: int = 3, pause: float = 0.3, max_seconds: float = PHASE_MAX_SECONDS):
        self.session, self.uses, self.pause, self.max_seconds = session, uses, pause, max_seconds
        self.total = self.failed = 0
        self.kids: Counter = Counter()
        self.failures: Counter = Counter()
        self.latest = session.access
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _count(self, what: str, status: int | None, error: str = "") -> bool:
        self.total += 1
        if status != 200:
            self.failed += 1
            self.failures[f"{what} {status or error}"] += 1
        return status == 200

    def _run(self):
        start = time.monotonic()
        while not self._stop.is_set() and time.monotonic() - start < self.max_seconds:
            try:
                status, _ = self.session.refresh()
            except Exception as exc:  # noqa: BLE001 - every error counts as a failure
                self._count("refresh", None, type(exc).__name__)
                self._stop.wait(self.pause)
                continue
            if self._count("refresh", status):
                self.latest = self.session.access
                self.kids[kid_of(self.latest)] += 1
                for _ in range(self.uses):
                    try:
                        status, _ = call(self.session.edge, "GET", ME, token=self.latest)
                        self._count("me", status)
                    except Exception as exc:  # noqa: BLE001
                        self._count("me", None, type(exc).__name__)
            self._stop.wait(self.pause)

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def summary(self) -> str:
        return (f"{self.total} requests ({sum(self.kids.values())} refreshes), {self.failed} failed "
                f"{dict(self.failures)}, new tokens by kid {dict(self.kids)}")


def hold_token(holder: dict, churn: Churn):
    """Headers of the old-key user's load: its token, or, once that is about to expire
    (a phase longer than the token lifetime), the churn client's latest one."""
    def headers() -> dict:
        if time.time() < holder["exp"] - 30:
            return {"Authorization": f"Bearer {holder['token']}"}
        holder["switched"] = True
        return {"Authorization": f"Bearer {churn.latest}"}
    return headers


# ---------------------------------------------------------------- the drill
@pytest.fixture(scope="module")
def lab(lab_inventory):
    inv = lab_inventory_data()  # fresh: an earlier drill may have added an app host (scale-out)
    kids, active = vault_kids()
    if len(kids) != 1:
        pytest.fail(f"the lab vault is in the middle of a rotation (kids {kids}, signing {active}): finish it "
                    "(docs/runbooks/rotate-secrets.md) or run the phases by hand before this drill")
    states = running(inv)
    for host, state in states.items():
        assert state["running"], f"{host}: socialsphere.service does not run ({state})"
        if state["jwt_kids"] != kids or state["jwt_active_kid"] != active:
            pytest.fail(f"{host} runs kids {state['jwt_kids']} signing {state['jwt_active_kid']}, the lab vault has "
                        f"{kids} signing {active}: a rotation was left half done (an interrupted drill?); finish it: "
                        "ansible-playbook -i inventories/lab/hosts.yml --vault-password-file .lab/vault-pass "
                        "playbooks/rotate-secrets.yml -e rotate=jwt -e rotate_jwt_phase=retire (it says when it may)")
    releases = {s["release"] for s in states.values()}
    assert len(releases) == 1, f"app hosts run different releases: {releases}"
    release = releases.pop()
    if not (REPO / "dist" / f"socialsphere-{release}.tar.gz").is_file():
        pytest.fail(f"dist/socialsphere-{release}.tar.gz (the release the app hosts run) is missing: the rotation "
                    "rolls out through playbooks/app.yml, which deploys it; build it (scripts/build-release)")
    # The lab admin logs in, as in test_app_admin.py (its password from `make lab-admin-password`).
    printed = subprocess.run(["make", "-s", "--no-print-directory", "lab-admin-password"], cwd=REPO,
                             capture_output=True, text=True, timeout=300, check=True).stdout.strip()
    return {"inv": inv, "old": active, "edge": Edge.from_inventory(inv),
            "email": lab_all_vars(inv)["socialsphere_admin_email"], "password": printed.splitlines()[-1].strip()}


def run_phase(lab: dict, phase: str, holder: dict, churn_session: Session, figures: dict) -> str:
    """One rollout of `phase` under load; checks 0 failed requests, the drain of every app
    host in every HAProxy and a restart of every app host; returns the playbook's output."""
    inv, edge = lab["inv"], lab["edge"]
    apps = group_hosts(inv, "app")
    pids = {h: s["pid"] for h, s in running(inv).items()}
    holder.pop("switched", None)
    with Churn(churn_session) as churn, HaproxyWatch(inv) as watch, \
            LoadGenerator(edge, path=ME, max_seconds=PHASE_MAX_SECONDS, headers=hold_token(holder, churn)) as load:
        time.sleep(3)
        rc, out, seconds = rotate(phase)
        time.sleep(3)
    figures[phase] = (f"phase {phase}: {seconds:.0f}s; old-key user's load: {load.result.summary()}"
                      f"{' (switched to fresh tokens near expiry)' if holder.get('switched') else ''}; "
                      f"refreshing client: {churn.summary()}")
    print(figures[phase])
    assert rc == 0, out[-6000:]
    assert not load.ran_out
    assert load.result.total > 100, load.result.summary()
    assert load.result.failed == 0, load.result.summary()
    assert churn.total > 20 and churn.failed == 0, churn.summary()
    assert_drained_and_up(inv, watch, apps, f"phase {phase}")
    after = running(inv)
    for host in apps:
        assert after[host]["pid"] != pids[host], f"{host}: Gunicorn was not restarted in phase {phase}"
    figures[phase + " churn kids"] = dict(churn.kids)
    return out


def login_kid(lab: dict) -> str:
    session = Session(lab["edge"], lab["email"], lab["password"])
    status, _ = call(lab["edge"], "GET", ME, token=session.access)
    assert status == 200
    return kid_of(session.access)


def test_jwt_key_rotation_under_load_logs_nobody_out(lab):
    inv, edge, old = lab["inv"], lab["edge"], lab["old"]
    figures: dict = {}
    user = Session(edge, lab["email"], lab["password"])  # logged in before the rotation
    churn_session = Session(edge, lab["email"], lab["password"])
    first_token = user.access
    assert kid_of(first_token) == old
    holder = {"token": first_token, "exp": expires_at(first_token)}

    # ---- phase add: the new key everywhere, the old one still signs
    out = jwt_keys("add")
    new = re.search(r"added (\S+) \(not signing yet\)", out).group(1)
    run_phase(lab, "add", holder, churn_session, figures)
    for host, state in running(inv).items():
        assert state["jwt_kids"] == sorted([old, new]) and state["jwt_active_kid"] == old, (host, state)
    assert login_kid(lab) == old
    assert set(figures["add churn kids"]) == {old}
    assert call(edge, "GET", ME, token=holder["token"])[0] == 200

    # ---- phase activate: the new key signs; the old key's tokens still work
    status, _ = user.refresh()  # a fresh token of the old key, valid through this phase
    assert status == 200 and kid_of(user.access) == old
    holder.update(token=user.access, exp=expires_at(user.access))
    old_token = user.access
    jwt_keys("activate", new)
    run_phase(lab, "activate", holder, churn_session, figures)
    activated_at = time.time()
    for host, state in running(inv).items():
        assert state["jwt_kids"] == sorted([old, new]) and state["jwt_active_kid"] == new, (host, state)
    assert login_kid(lab) == new
    assert new in figures["activate churn kids"]
    status, _ = churn_session.refresh()
    assert status == 200 and kid_of(churn_session.access) == new
    for token in (old_token, first_token):  # users of the old key are not logged out
        if time.time() < expires_at(token) - 5:
            status, body = call(edge, "GET", ME, token=token)
            assert status == 200, (status, body)

    # ---- phase retire, too early: refused, nothing changed
    jwt_keys("retire", old)
    pids = {h: s["pid"] for h, s in running(inv).items()}
    rc, out, _ = rotate("retire")
    assert rc != 0
    # one refusal per app host (each restarted at its own time in phase activate): wait for the last
    refused = re.findall(r"Too early to retire kid\(s\) (\S+): (\S+) signs with .* \(in (\d+) s\)", out)
    assert refused and {kid for kid, _, _ in refused} == {old}, out[-4000:]
    assert all(c["changed"] == 0 for c in parse_recap(out).values()), parse_recap(out)
    assert {h: s["pid"] for h, s in running(inv).items()} == pids
    wait = max(int(seconds) for _, _, seconds in refused)
    ttl = lifetime(old_token)
    assert wait <= ttl + 60 + 30, f"asked to wait {wait}s for tokens of {ttl:.0f}s"
    print(f"retire refused {time.time() - activated_at:.0f}s after phase activate; waiting {wait}s "
          f"(access tokens live {ttl:.0f}s)")
    time.sleep(wait + 5)
    status, body = call(edge, "GET", ME, token=old_token)
    assert status == 401 and body.get("error") == "token_expired", (status, body)

    # ---- phase retire: the old key goes
    status, _ = user.refresh()
    assert status == 200 and kid_of(user.access) == new
    holder.update(token=user.access, exp=expires_at(user.access))
    run_phase(lab, "retire", holder, churn_session, figures)
    for host, state in running(inv).items():
        assert state["jwt_kids"] == [new] and state["jwt_active_kid"] == new, (host, state)
    assert vault_kids() == ([new], new)
    assert login_kid(lab) == new
    status, _ = call(edge, "GET", ME, token=old_token)
    assert status == 401

    # ---- the same phase again changes nothing
    pids = {h: s["pid"] for h, s in running(inv).items()}
    rc, out, seconds = rotate("retire")
    assert rc == 0, out[-4000:]
    assert "nothing to do" in out
    recap = parse_recap(out)
    assert recap and all(c["changed"] == 0 for c in recap.values()), recap
    assert {h: s["pid"] for h, s in running(inv).items()} == pids
    figures["retire again"] = f"phase retire again: {seconds:.0f}s, changed=0"

    print("JWT key rotation", old, "->", new)
    for name in ("add", "activate", "retire", "retire again"):
        print(" ", figures[name])
