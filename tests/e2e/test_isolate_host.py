"""Drill: an app host is compromised, contained, and replaced (docs/runbooks/host-compromised.md).

1. Under users' traffic through the VIP (userload), the app host (app2) joins the
   inventory group `isolated` (an inventory of the drill's own, given after the lab's)
   and `playbooks/isolate-host.yml -e isolate_host=app2` runs: **0 failed requests**,
   0 acknowledged writes lost.
2. Contained: app2 is MAINT in every HAProxy; from app2 nothing answers (PostgreSQL on
   the primary, HTTPS on the edge hosts: timeout or refused) while another app host
   still reaches the primary; every other host's ufw starts with the denies of app2;
   the evidence directory is there (mode 0700: the central journal's export, what app2
   gave over SSH, SHA256SUMS of it all).
3. `site.yml` with app2 still isolated leaves it out and keeps it cut off; its second
   run reports **changed=0** on every host.
4. Replaced: the machine destroyed, a new one under the same name (`labctl up`), app2
   out of the group `isolated` (the drill's inventory dropped), `replace-host.yml
   -e replace_host=app2` under users' traffic: 0 failed requests; app2 is UP in every
   HAProxy on the release it ran, reaches the primary again, no isolation rule is left.

Prints the time to contain (the playbook's own figure, and the whole run), the time to
recovery (machine destroyed → UP in every HAProxy) and the load of each phase. A failure
midway puts app2 back (new machine, replace-host.yml) so the lab is left as found.
A long drill (`make test-drills`, about 20 minutes).
Run: pytest -s tests/e2e/test_isolate_host.py
"""
import json
import re
import stat
import time

import pytest

import ansible_run
from labkit.edge import Edge
from labkit.haproxy import haproxy_servers, wait_server_status
from labkit.hosts import destroy, group_hosts, host_address, lab_exec, labctl
from labkit.inventory import INVENTORY, VAULT_PASS, parse_recap
from labkit.release import current_release
from labkit.userload import lab_user_load

DENY_COMMENT = "socialsphere: isolated "


def run(playbook, *extra, isolated=None, timeout=3600):
    """A playbook against the lab; `isolated`: the drill's inventory with the host in group isolated."""
    args = (["-i", str(isolated)] if isolated else []) + list(extra)
    return ansible_run.run_playbook(INVENTORY, playbook, *args, vault_pass=VAULT_PASS, timeout=timeout)


def reaches(inv, host, address, port):
    """Whether `host` opens a TCP connection to address:port within 5 s (the runbook's check)."""
    probe = lab_exec(inv, host, "timeout", "5", "bash", "-c", f"</dev/tcp/{address}/{port}", check=False, timeout=30)
    return probe.returncode == 0


def denies_of(inv, host):
    """The `socialsphere: isolated ...` rules of `ufw status numbered` on host, and whether
    they all come before the first ALLOW or LIMIT rule (ufw applies the first match)."""
    lines = [line for line in lab_exec(inv, host, "ufw", "status", "numbered").stdout.splitlines()
             if re.match(r"^\[\s*\d+\]", line)]
    denies = [i for i, line in enumerate(lines) if DENY_COMMENT in line]
    allows = [i for i, line in enumerate(lines) if " ALLOW " in line or " LIMIT " in line]
    return [lines[i] for i in denies], all(i < min(allows, default=len(lines)) for i in denies)


def test_compromised_app_host_contained_and_replaced_under_load(lab_inventory, tmp_path):
    inv = lab_inventory
    apps, edges = group_hosts(inv, "app"), group_hosts(inv, "edge")
    if len(apps) < 2 or not edges:
        pytest.skip("needs two app hosts and an edge host")
    target = "app2" if "app2" in apps else apps[-1]
    other_app = next(h for h in apps if h != target)
    hostvars = inv["_meta"]["hostvars"]
    primary = next(h for h in group_hosts(inv, "db") if hostvars[h].get("postgresql_role") == "primary")
    peers = [h for h in hostvars if h != target]
    release = current_release(inv, target)
    db_address = host_address(inv, primary)
    assert reaches(inv, target, db_address, 5432), f"{target} does not reach {primary}:5432 before the drill"

    isolated = tmp_path / "isolated.yml"
    isolated.write_text(json.dumps({"all": {"children": {"isolated": {"hosts": {target: {}}}}}}))
    evidence_root = tmp_path / "evidence"
    client = Edge.from_inventory(inv)
    figures = {"host": target}
    restored = False
    try:
        # 1. contain under load
        with lab_user_load(client, max_seconds=3600) as load:
            time.sleep(3)
            t0 = time.monotonic()
            rc, out = run("isolate-host.yml", "-e", f"isolate_host={target}",
                          "-e", f"isolate_evidence_root={evidence_root}", isolated=isolated)
            figures["isolate_playbook_s"] = round(time.monotonic() - t0, 1)
            assert rc == 0, out[-5000:]
            time.sleep(5)
        contained = re.search(r"Out of service in ([0-9.]+) s, contained in ([0-9.]+) s", out)
        assert contained, out[-3000:]
        figures["time_out_of_service_s"] = float(contained.group(1))
        figures["time_to_contain_s"] = float(contained.group(2))
        figures["load_contain"] = load.result.summary()
        assert load.result.total > 100
        assert load.result.failed == 0, f"requests failed while {target} was isolated: {load.result.report()}"
        assert not load.result.lost, load.result.lost[:10]

        # 2. contained
        for edge_host in edges:
            server = haproxy_servers(inv, edge_host)[target]
            assert server["admin"] == "maint", f"{edge_host}: {target} {server}"
        for peer, port in [(primary, 5432)] + [(e, 443) for e in edges]:
            assert not reaches(inv, target, host_address(inv, peer), port), f"{target} still reaches {peer}:{port}"
        assert reaches(inv, other_app, db_address, 5432), f"{other_app} lost {primary}:5432"
        for peer in peers:
            denies, first = denies_of(inv, peer)
            assert len(denies) == 2 and all(DENY_COMMENT + target in d for d in denies), f"{peer}: {denies}"
            assert first, f"{peer}: an allow rule comes before the denies of {target}"
        evidence = list(evidence_root.glob(f"{target}-*"))
        assert len(evidence) == 1, evidence
        evidence = evidence[0]
        assert stat.S_IMODE(evidence.stat().st_mode) == 0o700
        names = sorted(p.name for p in evidence.iterdir())
        figures["evidence"] = f"{evidence.name}: {', '.join(names)}"
        assert "gunicorn" in (evidence / "host-processes.txt").read_text()
        assert ":8000" in (evidence / "host-sockets.txt").read_text()
        assert "socialsphere" in (evidence / "host-journal.txt").read_text()
        assert "/etc/passwd" in (evidence / "host-file-hashes.txt").read_text()
        assert "/srv/socialsphere/releases/" in (evidence / "host-file-hashes.txt").read_text()
        journals = list(evidence.glob("central-journal-*"))
        assert journals, f"no file of the central journal in {names}"
        # journald's file signature: the receiver's own file, as it was written.
        assert all(j.read_bytes()[:8] == b"LPKSHHRH" for j in journals), journals
        sums = (evidence / "SHA256SUMS").read_text()
        assert all(n in sums for n in names if n != "SHA256SUMS"), sums

        # 3. site.yml keeps it isolated
        runs = []
        for _ in range(2):
            t1 = time.monotonic()
            rc, out = run("site.yml", isolated=isolated)
            assert rc == 0, out[-5000:]
            recap = parse_recap(out)
            runs.append((round(time.monotonic() - t1, 1), sum(c["changed"] for c in recap.values())))
            assert target not in recap, f"site.yml ran on {target}: {recap[target]}"
        figures["site_yml_runs_s_changed"] = runs
        assert runs[1][1] == 0, f"second site.yml run changed {runs[1][1]} things: {parse_recap(out)}"
        assert all(haproxy_servers(inv, e)[target]["admin"] == "maint" for e in edges)
        assert not reaches(inv, target, db_address, 5432), f"site.yml opened {primary}:5432 to {target} again"

        # 4. replace: machine destroyed, new one, out of group isolated, replace-host.yml
        with lab_user_load(client, max_seconds=3600) as load:
            t2 = time.monotonic()
            destroy(inv, target)
            up = labctl(inv, "up", target)
            assert up.returncode == 0, up.stdout + up.stderr
            figures["new_machine_s"] = round(time.monotonic() - t2, 1)
            t3 = time.monotonic()
            rc, out = run("replace-host.yml", "-e", f"replace_host={target}")
            figures["replace_playbook_s"] = round(time.monotonic() - t3, 1)
            assert rc == 0, out[-5000:]
            for edge_host in edges:
                assert wait_server_status(inv, edge_host, target, "UP", 120) is not None, f"{edge_host}: {target} not UP"
            figures["time_to_recovery_s"] = round(time.monotonic() - t2, 1)
            restored = True
            time.sleep(10)
        figures["load_replace"] = load.result.summary()
        assert load.result.failed == 0, f"requests failed while {target} was replaced: {load.result.report()}"
        assert not load.result.lost, load.result.lost[:10]
        assert current_release(inv, target) == release
        assert all(haproxy_servers(inv, e)[target]["admin"] == "ready" for e in edges)
        assert reaches(inv, target, db_address, 5432), f"the new {target} does not reach {primary}:5432"
        for peer in peers:
            denies, _ = denies_of(inv, peer)
            assert not denies, f"{peer} still denies: {denies}"
    finally:
        print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
        if not restored:
            # Leave the lab as found: a new machine, not isolated, converged back.
            destroy(inv, target)
            up = labctl(inv, "up", target)
            rc, out = run("replace-host.yml", "-e", f"replace_host={target}")
            print(f"restore after the failure: labctl up {up.returncode}, replace-host.yml rc {rc}\n{out[-2000:]}")
