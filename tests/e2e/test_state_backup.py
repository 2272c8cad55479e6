"""Control-node state backup and restore (docs/runbooks/control-node-lost.md), the
commands of the runbook against the lab:

- `playbooks/state-backup.yml` stores one vault-encrypted archive on every backup host
  (root only) and publishes its time, which node_exporter serves to the monitoring host;
- `scripts/state-restore --put-back`, run from a fresh clone of the repository as on a
  new control node, brings back the inventory (vault file included), the internal CA
  and each edge host's saved /etc/letsencrypt, byte for byte, from a backup host;
- a wrong vault password writes nothing; a file of the clone that differs from the
  archive is not overwritten without --force;
- a plain CA key is refused, and that run stores nothing.

About 1 minute. Run: pytest -s tests/e2e/test_state_backup.py
"""
import json
import os
import subprocess
import tarfile
import time

import pytest

from labkit.hosts import group_hosts, host_address, lab_all_vars, lab_exec
from labkit.inventory import BIN, INVENTORY, REPO, VAULT_PASS, ansible_env, parse_recap, run_playbook

REMOTE_DIR = "/var/backups/socialsphere-state"
METRIC = "socialsphere_state_backup_last_success_timestamp_seconds"


def archives(inv, host):
    """{name: (mode, owner, size)} of the archives on a backup host."""
    out = lab_exec(inv, host, "find", REMOTE_DIR, "-name", "socialsphere-state-*.tar.gz.vault",
                   "-printf", "%f %m %u %s\n", check=False).stdout
    return {name: (mode, owner, int(size)) for name, mode, owner, size in (ln.split() for ln in out.splitlines())}


@pytest.fixture(scope="module")
def backup_run(lab_inventory):
    if not group_hosts(lab_inventory, "backup") or not group_hosts(lab_inventory, "edge"):
        pytest.skip("needs backup and edge hosts")
    started = time.time()
    rc, out = run_playbook("state-backup.yml")
    assert rc == 0, out[-4000:]
    recap = parse_recap(out)
    assert all(counts["failed"] == 0 and counts["unreachable"] == 0 for counts in recap.values()), recap
    print(f"state-backup.yml took {time.time() - started:.1f} s")
    return started


def restore(inv, clone, source, dest, *extra, password_file=VAULT_PASS):
    """scripts/state-restore of the clone, as on a new control node with the deploy key."""
    key = lab_all_vars(inv)["ansible_ssh_private_key_file"]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return subprocess.run(
        [str(clone / "scripts" / "state-restore"), "--from", source, "--identity", key,
         "--ssh-option", "StrictHostKeyChecking=no", "--ssh-option", "UserKnownHostsFile=/dev/null",
         "--dest", str(dest), "--vault-password-file", str(password_file), *extra],
        capture_output=True, text=True, timeout=300, env=env, check=False)


@pytest.fixture(scope="module")
def clone(lab_inventory, tmp_path_factory):
    """A fresh clone of this repository: the new control node."""
    path = tmp_path_factory.mktemp("control") / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(path)], check=True)
    return path


def test_every_backup_host_holds_the_new_archive_root_only(lab_inventory, backup_run):
    names = set()
    for host in group_hosts(lab_inventory, "backup"):
        found = archives(lab_inventory, host)
        assert found, f"{host}: no archive in {REMOTE_DIR}"
        newest = max(found)
        mode, owner, size = found[newest]
        assert (mode, owner) == ("600", "root") and size > 1000, f"{host}: {newest} {found[newest]}"
        dir_mode = lab_exec(lab_inventory, host, "stat", "-c", "%a %U", REMOTE_DIR).stdout.split()
        assert dir_mode == ["700", "root"], f"{host}: {REMOTE_DIR} is {dir_mode}"
        head = lab_exec(lab_inventory, host, "head", "-c", "14", f"{REMOTE_DIR}/{newest}").stdout
        assert head == "$ANSIBLE_VAULT", f"{host}: {newest} is not vault-encrypted: {head!r}"
        names.add(newest)
    assert len(names) == 1, f"the backup hosts hold different newest archives: {names}"


def test_the_archive_time_reaches_the_monitoring_host(lab_inventory, backup_run):
    mon = group_hosts(lab_inventory, "monitoring")[0]
    for host in group_hosts(lab_inventory, "backup"):
        body = lab_exec(lab_inventory, mon, "curl", "-fsS", f"http://{host_address(lab_inventory, host)}:9100/metrics",
                        timeout=30).stdout
        values = [float(ln.split()[-1]) for ln in body.splitlines() if ln.startswith(METRIC + " ")]
        assert values, f"{host}: node_exporter does not serve {METRIC}"
        assert values[0] >= backup_run - 5, f"{host}: {METRIC} {values[0]} is older than this run ({backup_run})"


def test_state_restore_brings_everything_back_into_a_fresh_clone(lab_inventory, backup_run, clone, tmp_path):
    source = host_address(lab_inventory, group_hosts(lab_inventory, "backup")[-1])  # the off-site copy
    res = restore(lab_inventory, clone, source, tmp_path / "work", "--put-back")
    print(res.stdout[-1500:], res.stderr[-1500:])
    assert res.returncode == 0, res.stdout + res.stderr
    manifest = json.loads((tmp_path / "work" / "state" / "MANIFEST.json").read_text())
    places = manifest["places"]
    # Every file of the originals is back, byte for byte, at the same place in the clone.
    allv = lab_all_vars(lab_inventory)
    originals = {
        "inventory": INVENTORY.parent,
        "ca": REPO / places["ca"],
        "letsencrypt": REPO / places["letsencrypt"],
    }
    assert originals["inventory"].resolve() == (REPO / places["inventory"]).resolve()
    compared = 0
    for part, original in originals.items():
        for path in sorted(p for p in original.rglob("*") if p.is_file() and ".ansible" not in p.parts):
            copy = clone / places[part] / path.relative_to(original)
            assert copy.is_file(), f"{part}: {copy} was not restored"
            assert copy.read_bytes() == path.read_bytes(), f"{part}: {copy} differs from {path}"
            compared += 1
    for required in (f"{places['ca']}/ca.key", f"{places['inventory']}/hosts.yml",
                     f"{places['inventory']}/group_vars/all/vault.yml"):
        assert (clone / required).is_file(), required
    assert (clone / places["inventory"] / "group_vars/all/vault.yml").read_text().startswith("$ANSIBLE_VAULT")
    # Each edge host's saved /etc/letsencrypt opens with the vault password and holds its lineage.
    domain = allv["socialsphere_domain"]
    for edge in group_hosts(lab_inventory, "edge"):
        vaulted = clone / places["letsencrypt"] / f"{edge}.tar.gz.vault"
        plain = tmp_path / f"{edge}.tar.gz"
        subprocess.run([str(BIN / "ansible-vault"), "decrypt", "--vault-password-file", str(VAULT_PASS),
                        "--output", str(plain), str(vaulted)], check=True, env=ansible_env(), capture_output=True)
        with tarfile.open(plain) as tar:
            names = set(tar.getnames())
        for member in (f"letsencrypt/renewal/{domain}.conf", f"letsencrypt/live/{domain}/privkey.pem",
                       "letsencrypt/accounts"):
            assert member in names, f"{edge}: {member} not in its saved /etc/letsencrypt"
    print(f"restored {compared} files into a fresh clone from {source}; {len(manifest['hosts'])} hosts in the manifest")
    # Run again: the same files are there already, nothing is in the way.
    again = restore(lab_inventory, clone, source, tmp_path / "work2", "--put-back")
    assert again.returncode == 0, again.stdout + again.stderr


def test_state_restore_refuses_to_overwrite_a_file_that_differs(lab_inventory, backup_run, clone, tmp_path):
    source = host_address(lab_inventory, group_hosts(lab_inventory, "backup")[0])
    hosts_yml = clone / "inventories" / "lab" / "hosts.yml"
    if not hosts_yml.exists():
        first = restore(lab_inventory, clone, source, tmp_path / "first", "--put-back")
        assert first.returncode == 0, first.stdout + first.stderr
    hosts_yml.write_text(hosts_yml.read_text() + "# changed on the new control node\n")
    res = restore(lab_inventory, clone, source, tmp_path / "work", "--put-back")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "inventories/lab/hosts.yml" in res.stdout and "--force" in res.stdout, res.stdout
    assert hosts_yml.read_text().endswith("# changed on the new control node\n"), "hosts.yml was overwritten"
    forced = restore(lab_inventory, clone, source, tmp_path / "forced", "--put-back", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert hosts_yml.read_bytes() == INVENTORY.read_bytes()


def test_a_wrong_vault_password_writes_nothing(lab_inventory, backup_run, clone, tmp_path):
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("not the vault password\n")
    wrong.chmod(0o600)
    source = host_address(lab_inventory, group_hosts(lab_inventory, "backup")[0])
    res = restore(lab_inventory, clone, source, tmp_path / "work", "--put-back", password_file=wrong)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "wrong vault password" in res.stderr, res.stderr
    assert not (tmp_path / "work" / "state").exists(), "something was unpacked with a wrong password"


def test_a_plain_ca_key_is_refused_and_nothing_is_stored(lab_inventory, backup_run):
    before = {host: archives(lab_inventory, host) for host in group_hosts(lab_inventory, "backup")}
    time.sleep(1)  # a run that got through would name its archive after a later second
    rc, out = run_playbook("state-backup.yml", "-e", "state_backup_allow_plain_ca_key=false")
    assert rc != 0
    assert "ca.key is not encrypted" in out and "internal_ca_key_passphrase" in out, out[-3000:]
    after = {host: archives(lab_inventory, host) for host in group_hosts(lab_inventory, "backup")}
    assert after == before
