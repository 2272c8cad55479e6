"""The deploy SSH key and the vault password rotated on the lab, the commands of
docs/runbooks/rotate-secrets.md ("The deploy SSH key", "The vault password"):

- a new key pair (scripts/deploy-key new), then phase add (every host authorizes it
  beside the lab key: a new ssh login with it alone works everywhere), switch (the
  inventory's ansible_ssh_private_key_file points at it), retire (the lab key removed:
  sshd refuses it on every host, the new key logs in);
- the lab vault re-encrypted with a new password (scripts/vault-rekey --lab): the old
  password no longer opens it; then site.yml, with the new key and the new vault
  password, reports changed=0 on every host;
- back to where the lab was, by the commands of a leaked key: the vault rekeyed to its
  old password (.lab/vault-pass byte for byte as before: the drills' user accounts derive
  their passwords from it), and phase all with rotate_deploy_key_force (the lab key
  authorized, switched to and the temporary key retired in one run: sshd refuses it),
  then phase retire again (changed=0).

The lab's own key files stay what labctl and CI use: .lab/id_ed25519 is never touched
(the temporary key lives in .lab/rotate-drill/), group_vars/all/deploy_key.yml is put back
byte for byte, and whatever happens, the end of the drill checks that the lab key logs in
to every host and, where it does not, installs it again the way `labctl up` bootstraps a
host (docker exec), saying so. Prints the time of each phase. About 10 minutes, most of
it site.yml. A `make test-drills` member.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labkit.hosts import fail2ban_banned, lab_all_vars, lab_exec
from labkit.inventory import BIN, INVENTORY, REPO, VAULT_PASS, ansible_env, parse_recap, run_playbook

DEPLOY_KEY_VARS = INVENTORY.parent / "group_vars" / "all" / "deploy_key.yml"
LAB_KEY = REPO / ".lab" / "id_ed25519"
DRILL_DIR = REPO / ".lab" / "rotate-drill"
VAULT_FILE = INVENTORY.parent / "group_vars" / "all" / "vault.yml"


# ---------------------------------------------------------------- helpers
def fresh_ssh(inv: dict, host: str, key: Path) -> subprocess.CompletedProcess:
    """A NEW login with one key only (no agent identity, no control master)."""
    hv = inv["_meta"]["hostvars"][host]
    return subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                           "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15",
                           f"{hv['ansible_user']}@{hv['ansible_host']}", "true"],
                          capture_output=True, text=True, timeout=60, check=False)


def logins(inv: dict, key: Path) -> dict[str, bool]:
    return {h: fresh_ssh(inv, h, key).returncode == 0 for h in sorted(inv["_meta"]["hostvars"])}


def set_deploy_keys(authorized: list[Path], key_file: Path) -> None:
    """What the operator writes into group_vars/all/deploy_key.yml."""
    DEPLOY_KEY_VARS.write_text(yaml.safe_dump({
        "deploy_authorized_keys": [Path(f"{k}.pub").read_text().strip() for k in authorized],
        "ansible_ssh_private_key_file": str(key_file),
    }))


def rotate(phase: str, *extra: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    rc, out = run_playbook("rotate-secrets.yml", "-e", "rotate=deploy_key", "-e", f"rotate_deploy_key_phase={phase}",
                           *extra, timeout=1800)
    return rc, out, time.monotonic() - t0


KEEP_DIRS: list[Path] = []  # what scripts/vault-rekey kept in this run (the old lab vault files)


def script(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=REPO, env=ansible_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"are kept in (\S+)/:", proc.stdout)
    if match:
        KEEP_DIRS.append(REPO / match.group(1))
    return proc.stdout


def vault_opens_with(password_file: Path) -> bool:
    return subprocess.run([str(BIN / "ansible-vault"), "view", "--vault-password-file", str(password_file),
                           str(VAULT_FILE)], env={k: v for k, v in ansible_env().items()
                                                  if not k.startswith("ANSIBLE_VAULT")},
                          capture_output=True, check=False).returncode == 0


def changed_hosts(out: str) -> dict:
    return {h: c["changed"] for h, c in parse_recap(out).items() if c.get("changed")}


def report(figures: list[tuple[str, float, str]]) -> None:
    print("\nphase                          time    afterwards")
    for name, seconds, note in figures:
        print(f"{name:30} {seconds:5.0f} s  {note}")


def put_the_lab_key_back(inv: dict, original_vars: bytes, temp_key: Path | None) -> list[str]:
    """Whatever happened: deploy_key.yml as labctl wrote it, and every host authorizing the
    lab key alone (installed again where the lab key is refused or the temporary key still
    logs in, as labctl's bootstrap installs it and roles/common keeps it)."""
    DEPLOY_KEY_VARS.write_bytes(original_vars)
    pub = Path(f"{LAB_KEY}.pub").read_text().strip()
    repaired = []
    # (each refused login counts for fail2ban: not tried again after the drill checked it)
    temp_logins = logins(inv, temp_key) if temp_key and temp_key.exists() else {}
    for host, ok in logins(inv, LAB_KEY).items():
        if ok and not temp_logins.get(host):
            continue
        lab_exec(inv, host, "sh", "-c", "printf '%s\\n' \"$0\" >/home/deploy/.ssh/authorized_keys && "
                 "chown deploy:deploy /home/deploy/.ssh/authorized_keys && chmod 0600 /home/deploy/.ssh/authorized_keys",
                 pub)
        repaired.append(host)
    return repaired


# ---------------------------------------------------------------- the drill
def test_deploy_key_and_vault_password_rotation(lab_inventory):
    inv = lab_inventory
    hosts = sorted(inv["_meta"]["hostvars"])
    if not DEPLOY_KEY_VARS.exists():
        pytest.fail(f"{DEPLOY_KEY_VARS} is missing: this lab was built by an older labctl; run `make lab-up`")
    original_vars = DEPLOY_KEY_VARS.read_bytes()
    labctl_vars = yaml.safe_load(original_vars)
    assert labctl_vars["ansible_ssh_private_key_file"] == str(LAB_KEY), labctl_vars
    assert labctl_vars["deploy_authorized_keys"] == [Path(f"{LAB_KEY}.pub").read_text().strip()]
    assert all(logins(inv, LAB_KEY).values()), "the lab key does not log in everywhere before the drill"

    leftover = DRILL_DIR / "vault-pass.before"
    if leftover.exists() and leftover.read_bytes() != VAULT_PASS.read_bytes():
        pytest.fail(f"an earlier run of this drill left .lab/vault-pass changed: {leftover} holds the lab's password "
                    f"from before it. If the vault does not open with .lab/vault-pass, put it back with "
                    f"`scripts/vault-rekey --lab --new-vault-password-file {leftover}`, then remove {DRILL_DIR}")
    shutil.rmtree(DRILL_DIR, ignore_errors=True)
    DRILL_DIR.mkdir(mode=0o700, parents=True)
    temp_key = DRILL_DIR / "id_ed25519-rotated"
    saved_pass = DRILL_DIR / "vault-pass.before"
    shutil.copy2(VAULT_PASS, saved_pass)
    original_pass = VAULT_PASS.read_bytes()
    gateway = lab_all_vars(inv)["lab_gateway"]
    figures: list[tuple[str, float, str]] = []
    t_all = time.monotonic()
    completed = False
    try:
        # ---- a new key pair on the control node
        out = script("deploy-key", "-i", str(INVENTORY.parent), "new", "--no-passphrase", "--file", str(temp_key))
        assert temp_key.stat().st_mode & 0o077 == 0 and "PRIVATE KEY" not in out
        assert not any(logins(inv, temp_key).values()), "the new key logs in before phase add"

        # ---- add: both keys authorized, the lab key still used
        set_deploy_keys([LAB_KEY, temp_key], LAB_KEY)
        rc, out, seconds = rotate("add")
        assert rc == 0, out[-5000:]
        assert set(changed_hosts(out)) == set(hosts), out[-3000:]  # each host's authorized_keys gained the key
        assert all(logins(inv, temp_key).values()) and all(logins(inv, LAB_KEY).values())
        figures.append(("add", seconds, f"both keys log in to all {len(hosts)} hosts"))

        # ---- switch: the control node uses the new key
        set_deploy_keys([LAB_KEY, temp_key], temp_key)
        rc, out, seconds = rotate("switch")
        assert rc == 0, out[-5000:]
        assert not changed_hosts(out), out[-3000:]
        assert re.search(r"Next:\s+remove", out), out[-3000:]
        figures.append(("switch", seconds, "checked with the new key only, nothing changed"))

        # ---- retire: the lab key removed, sshd refuses it
        set_deploy_keys([temp_key], temp_key)
        rc, out, seconds = rotate("retire")
        assert rc == 0, out[-5000:]
        assert set(changed_hosts(out)) == set(hosts), out[-3000:]
        refused = [h for h in hosts if fresh_ssh(inv, h, LAB_KEY).returncode != 0]
        assert refused == hosts, f"the retired key still logs in to {sorted(set(hosts) - set(refused))}"
        assert all(logins(inv, temp_key).values())
        status = script("deploy-key", "-i", str(INVENTORY.parent), "status")
        assert status.count("SHA256:") == 1 and "<- this control node connects with it" in status, status
        figures.append(("retire", seconds, f"old key refused by sshd on {len(refused)} hosts, new key logs in"))

        # ---- the vault password
        t0 = time.monotonic()
        out = script("vault-rekey", "--lab")
        assert VAULT_PASS.read_bytes() != original_pass
        assert vault_opens_with(VAULT_PASS) and not vault_opens_with(saved_pass)
        assert original_pass.decode().strip() not in out
        figures.append(("vault rekey", time.monotonic() - t0, "the old password no longer opens the vault"))

        # ---- site.yml with the new key and the new vault password: nothing to change
        t0 = time.monotonic()
        rc, out = run_playbook("site.yml", timeout=3600)
        assert rc == 0, out[-5000:]
        assert set(hosts) <= set(parse_recap(out))
        assert not changed_hosts(out), out[-5000:]
        figures.append(("site.yml (new key, new vault)", time.monotonic() - t0, "changed=0 on every host"))

        # ---- back: the vault to its old password, then the lab key by the leaked-key path
        t0 = time.monotonic()
        script("vault-rekey", "--lab", "--new-vault-password-file", str(saved_pass))
        assert VAULT_PASS.read_bytes() == original_pass and vault_opens_with(VAULT_PASS)
        figures.append(("vault rekey back", time.monotonic() - t0, ".lab/vault-pass as before"))

        set_deploy_keys([LAB_KEY], LAB_KEY)
        rc, out, seconds = rotate("all", "-e", "rotate_deploy_key_force=true",
                                  "-e", f"rotate_deploy_key_previous={temp_key}")
        assert rc == 0, out[-5000:]
        assert all(logins(inv, LAB_KEY).values())
        refused = [h for h in hosts if fresh_ssh(inv, h, temp_key).returncode != 0]
        assert refused == hosts, f"the retired key still logs in to {sorted(set(hosts) - set(refused))}"
        figures.append(("all (force, back to lab key)", seconds, f"temporary key refused on {len(refused)} hosts"))

        DEPLOY_KEY_VARS.write_bytes(original_vars)
        rc, out, seconds = rotate("retire")
        assert rc == 0, out[-5000:]
        assert not changed_hosts(out), out[-3000:]
        figures.append(("retire again", seconds, "changed=0"))

        banned = {h: fail2ban_banned(inv, h, "sshd") for h in hosts}
        assert not any(gateway in b for b in banned.values()), f"the control node was banned: {banned}"
        completed = True
    finally:
        repaired = put_the_lab_key_back(inv, original_vars, None if completed else temp_key)
        if VAULT_PASS.read_bytes() != original_pass and vault_opens_with(VAULT_PASS):
            script("vault-rekey", "--lab", "--new-vault-password-file", str(saved_pass))
        report(figures)
        print(f"total {time.monotonic() - t_all:.0f} s")
        if repaired:
            print(f"the lab key was re-installed by docker exec on: {', '.join(repaired)}")
    assert not repaired
    assert VAULT_PASS.read_bytes() == original_pass
    shutil.rmtree(DRILL_DIR, ignore_errors=True)
    for keep in KEEP_DIRS:  # the old lab vault files: the vault opened with its password again above
        shutil.rmtree(keep, ignore_errors=True)
