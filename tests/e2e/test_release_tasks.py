"""The release tools' tasks in the lab (issue 13, items 1 and 2), in file order, each a
deploy of one of five re-versioned builds of the checkout (`scripts/build-release
--version-suffix`):

1. `fab deploy`, then `site.yml` of the same release reports changed=0 on every host
   (one activation path), and each app host's deploy log has the deploy's line;
2. two deploys at once: the second is refused while the first runs, naming the holder
   and since when, and changes nothing; the first finishes;
3. a stale lock (a run that is gone) refuses a deploy; `fab unlock` breaks it and logs
   the holder; `-e app_deploy_lock_break=true` does the same within a deploy;
4. a batch of every app host (`--batch 2` on the lab's two) is refused before any lock
   (it would drain them all at once); `fab deploy --batch 2` with three app hosts or
   more, else `--batch 50%`, under users' traffic through the VIP (userload: logins,
   dashboard reads, posts written, edited and deleted): 0 failed requests, 0
   acknowledged writes lost, the batches serial makes, the batch size in the deploy log;
5. after the fifth deploy exactly socialsphere_app_keep_releases (5) releases remain on
   each host, current and previous among them; `fab prune --keep 1` leaves only those
   two; `fab releases` shows them and the deploy log.

At the end the lab goes back to the release it ran (`fab deploy`, reinstalled from
dist/ if it was pruned). About 40 minutes on the lab; run with `make test-drills`.
"""
import getpass
import json
import math
import os
import socket
import subprocess
import time

import pytest

from labkit.edge import Edge
from labkit.haproxy import haproxy_servers
from labkit.hosts import group_hosts, lab_exec
from labkit.inventory import REPO, parse_recap, run_playbook
from labkit.release import build_release, current_release, fab, fab_command, fab_env
from labkit.userload import lab_user_load

ROOT = "/srv/socialsphere"
LOCK = f"{ROOT}/.deploy-lock"
DEPLOY_LOG = "/var/log/socialsphere/deploys.log"
KEEP = 5  # socialsphere_app_keep_releases' default
DEPLOY_MAX_SECONDS = 3600
GHOST = {"id": "20200101T000000Z-0badf00d", "who": "ghost@gone", "since": "2020-01-01T00:00:00Z",
         "command": "fab deploy --version 0.0.0+gdead", "kind": "deploy", "version": "0.0.0+gdead", "batch": "1"}
ME = f"{getpass.getuser()}@{socket.gethostname()}"


def apps(inv):
    return group_hosts(inv, "app")


def records(inv, host):
    out = lab_exec(inv, host, "cat", DEPLOY_LOG, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def lock_of(inv, host):
    res = lab_exec(inv, host, "cat", LOCK, check=False)
    return json.loads(res.stdout) if res.returncode == 0 else None


def assert_no_lock(inv):
    for host in apps(inv):
        assert lock_of(inv, host) is None, f"{host}: a deploy lock is left: {lock_of(inv, host)}"


def write_lock(inv, host, content):
    res = lab_exec(inv, host, "sh", "-c", f"umask 022; printf '%s' '{json.dumps(content)}' > {LOCK}")
    assert res.returncode == 0, res.stderr


def installed(inv, host):
    out = lab_exec(inv, host, "sh", "-c", f"cd {ROOT}/releases && ls -1").stdout
    return sorted(out.split())


def link(inv, host, name):
    return os.path.basename(lab_exec(inv, host, "readlink", f"{ROOT}/{name}", check=False).stdout.strip())


def flat(text):
    """Output with Ansible's line wrapping undone (the yaml callback folds long messages)."""
    return " ".join(text.split())


def fab_in_background(*args):
    """`fab <args>` started, not waited for (the same command and environment as labkit.release.fab)."""
    return subprocess.Popen(fab_command(*args), cwd=REPO, env=fab_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def deploy_ok(*args, env=None):
    res = fab("deploy", *args, env=env, timeout=DEPLOY_MAX_SECONDS)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def versions(lab_inventory):
    inv = lab_inventory
    running = {current_release(inv, h) for h in apps(inv)}
    assert len(running) == 1, f"app hosts run different releases: {running}"
    original = running.pop()
    stamp = time.strftime("%H%M%S")
    built = [build_release(f"e2et{stamp}{c}") for c in "abcde"]
    assert original not in built
    yield {"original": original, "new": built}
    # Back to the release the lab ran (rotate-secrets and the idempotence test expect the
    # checkout's artifact); reinstalled from dist/ when it was pruned.
    if (REPO / "dist" / f"socialsphere-{original}.tar.gz").is_file():
        res = fab("deploy", "--version", original, timeout=DEPLOY_MAX_SECONDS)
        print(f"back to {original}: fab exit {res.returncode}")
    else:
        print(f"dist/socialsphere-{original}.tar.gz is gone: the lab stays on {built[-1]}")


def test_fab_deploy_then_site_yml_changes_nothing(lab_inventory, versions):
    inv = lab_inventory
    v1, original = versions["new"][0], versions["original"]
    before = {h: len(records(inv, h)) for h in apps(inv)}
    t0 = time.monotonic()
    deploy_ok("--version", v1)
    print(f"fab deploy {original} -> {v1}: {time.monotonic() - t0:.0f}s")
    assert {current_release(inv, h) for h in apps(inv)} == {v1}
    assert_no_lock(inv)
    for host in apps(inv):
        (line,) = records(inv, host)[before[host]:]
        assert (line["from"], line["to"], line["result"], line["kind"], line["batch"]) == \
            (original, v1, "ok", "deploy", "1"), line
        assert (line["who"], line["command"], line["host"]) == (ME, f"fab deploy --version {v1}", host), line
        assert line["time"].endswith("Z")
        assert link(inv, host, "previous") == original

    # site.yml of the same release finds nothing to do: the same plays ran.
    t0 = time.monotonic()
    rc, out = run_playbook("site.yml", "-e", f"socialsphere_release={v1}", timeout=3600)
    print(f"site.yml after fab deploy: {time.monotonic() - t0:.0f}s")
    assert rc == 0, out[-5000:]
    changed = {h: c["changed"] for h, c in parse_recap(out).items() if c["changed"]}
    assert changed == {}, f"site.yml changed something after fab deploy: {changed}\n{out[-5000:]}"
    assert_no_lock(inv)
    for host in apps(inv):
        assert len(records(inv, host)) == before[host] + 1, "site.yml activated nothing, so it logs nothing"


def test_a_second_deploy_is_refused_while_one_runs(lab_inventory, versions):
    inv = lab_inventory
    v2 = versions["new"][1]
    first = fab_in_background("deploy", "--version", v2)
    try:
        deadline = time.monotonic() + 600
        holder = None
        while holder is None and time.monotonic() < deadline and first.poll() is None:
            holder = lock_of(inv, apps(inv)[0])
            time.sleep(0.5)
        assert holder is not None, "the first deploy never took the lock"
        second = fab("deploy", "--version", v2)
        print(second.stdout[-3000:])
        assert second.returncode != 0
        assert f"is held by {holder['who']} since {holder['since']}" in flat(second.stdout + second.stderr), second.stdout[-3000:]
        assert "Nothing was changed" in flat(second.stdout + second.stderr)
        out, _ = first.communicate(timeout=DEPLOY_MAX_SECONDS)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-5000:]
    assert {current_release(inv, h) for h in apps(inv)} == {v2}
    assert_no_lock(inv)
    for host in apps(inv):
        runs = {r["run"] for r in records(inv, host)}
        assert holder["id"] in runs
        assert records(inv, host)[-1]["to"] == v2


def test_a_stale_lock_is_refused_and_broken_on_request(lab_inventory, versions):
    inv = lab_inventory
    v3 = versions["new"][2]
    for host in apps(inv):
        write_lock(inv, host, GHOST)
    res = fab("deploy", "--version", v3)
    assert res.returncode != 0
    assert f"is held by ghost@gone since {GHOST['since']}" in flat(res.stdout + res.stderr), res.stdout[-3000:]
    assert "fab unlock" in flat(res.stdout + res.stderr)

    res = fab("unlock")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert_no_lock(inv)
    for host in apps(inv):
        assert f"{host}: broke the deploy lock of ghost@gone since {GHOST['since']}" in flat(res.stdout + res.stderr), \
            res.stdout[-3000:]
        line = records(inv, host)[-1]
        assert (line["result"], line["kind"], line["holder"]["who"], line["who"]) == \
            ("lock-broken", "unlock", "ghost@gone", ME), line
    deploy_ok("--version", v3)
    assert {current_release(inv, h) for h in apps(inv)} == {v3}

    # The same inside a run: -e app_deploy_lock_break=true (nothing to activate here).
    write_lock(inv, apps(inv)[0], GHOST)
    rc, out = run_playbook("app.yml", "-e", f"socialsphere_release={v3}", "-e", "app_deploy_lock_break=true",
                           "-e", "app_preflight=false")
    assert rc == 0, out[-4000:]
    assert f"{apps(inv)[0]}: broke the deploy lock of ghost@gone" in flat(out)
    assert records(inv, apps(inv)[0])[-1]["result"] == "lock-broken"
    assert_no_lock(inv)


def test_a_batch_of_every_app_host_is_refused_and_a_batch_goes_under_load(lab_inventory, versions):
    """A batch that would drain every app host at once is refused before any lock (the
    site would answer 503); a batch that leaves one in rotation (2 hosts of 3 or more,
    else 50%) goes under load with 0 failed requests."""
    inv = lab_inventory
    v4 = versions["new"][3]
    n = len(apps(inv))
    before = {h: current_release(inv, h) for h in apps(inv)}
    res = fab("deploy", "--version", v4, "--batch", str(n))
    assert res.returncode != 0
    assert f"app_batch={n} activates all {n} app hosts at once" in flat(res.stdout + res.stderr), res.stdout[-3000:]
    assert "Nothing was changed" in flat(res.stdout + res.stderr)
    assert {h: current_release(inv, h) for h in apps(inv)} == before
    assert_no_lock(inv)

    batch, per_batch = ("2", 2) if n > 2 else ("50%", max(1, n * 50 // 100))
    edge = Edge.from_inventory(inv)
    with lab_user_load(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
        time.sleep(3)
        t0 = time.monotonic()
        res = deploy_ok("--version", v4, "--batch", batch)
        seconds = time.monotonic() - t0
        time.sleep(3)
    batches = res.stdout.count("PLAY [Activate the release one batch of app hosts at a time]")
    print(f"fab deploy --batch {batch} of {n} app hosts: {batches} batches, {seconds:.0f}s; "
          f"{load.result.summary()}")
    assert batches == math.ceil(n / per_batch), res.stdout[-3000:]
    assert not load.ran_out
    assert load.result.total > 100, load.result.summary()
    assert load.result.failed == 0, load.result.report()
    assert load.result.lost == [] and load.result.incomplete == [], load.result.report()
    assert {current_release(inv, h) for h in apps(inv)} == {v4}
    for host in apps(inv):
        line = records(inv, host)[-1]
        assert (line["to"], line["batch"], line["command"]) == (v4, batch, f"fab deploy --version {v4} --batch {batch}")
    for edge_host in group_hosts(inv, "edge"):
        for host, row in haproxy_servers(inv, edge_host).items():
            if host in apps(inv):
                assert row["status"].startswith("UP"), (edge_host, host, row)
    assert_no_lock(inv)


def test_five_deploys_keep_n_releases_and_prune_keeps_current_and_previous(lab_inventory, versions):
    inv = lab_inventory
    v1, v2, v3, v4, v5 = versions["new"]
    deploy_ok("--version", v5)
    for host in apps(inv):
        assert installed(inv, host) == sorted([v1, v2, v3, v4, v5]), f"{host}: {installed(inv, host)} (keep {KEEP})"
        assert (link(inv, host, "current"), link(inv, host, "previous")) == (v5, v4)
        deploys = [r["to"] for r in records(inv, host) if r.get("kind") == "deploy" and r["result"] == "ok"]
        assert deploys[-5:] == [v1, v2, v3, v4, v5], deploys

    res = fab("prune", "--keep", "1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for host in apps(inv):
        assert installed(inv, host) == sorted([v4, v5]), f"{host}: {installed(inv, host)}"
        line = records(inv, host)[-1]
        assert (line["kind"], sorted(line["removed"])) == ("prune", sorted([v1, v2, v3]))
    assert_no_lock(inv)

    res = fab("releases")
    assert res.returncode == 0, res.stderr[-3000:]
    print(res.stdout)
    for host in apps(inv):
        assert f"{host} (" in res.stdout
    assert f"* {v5}" in res.stdout and f"< {v4}" in res.stdout
    assert "prune: pruned " in res.stdout
