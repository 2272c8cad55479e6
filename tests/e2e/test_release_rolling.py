"""Rolling release under load: `fab deploy` of a new release, then `fab rollback`,
each while constant read traffic flows through the edge VIP; 0 failed requests.
Then a release that cannot start (its code crashes Gunicorn's workers on one host)
stops the rollout there and leaves the old release serving, again under load, and
its deploy lock does not block the rollback that follows.

Fabric runs playbooks/app.yml, the playbook site.yml runs (one activation path):
these drills measure that path. The new release is the checkout's sources
re-versioned (`scripts/build-release --version-suffix e2e<N>`): the code path of a
real release (upload, offline install, migration check, drain, switch, HUP, every
worker on the release, /readyz, ready) without needing a code change. HAProxy's
retries are on in the lab, so the test also watches every HAProxy during the
rollout and requires each app host to have been seen in DRAIN there (drained before
its switch) rather than relying on the retries.
"""
import json
import os
import time

import pytest

from labutil import parse_recap, run_playbook
from test_app_support import (
    Edge,
    HaproxyWatch,
    LoadGenerator,
    assert_drained_and_up,
    build_release,
    current_release,
    fab,
    group_hosts,
    haproxy_servers,
    host_address,
    lab_exec,
)

ROOT = "/srv/socialsphere"
LOCK = f"{ROOT}/.deploy-lock"
DEPLOY_LOG = "/var/log/socialsphere/deploys.log"
# The load covers the whole `fab deploy`, whose prepare step (install on every app
# host + migrate) takes 15+ minutes on this machine when it is loaded.
DEPLOY_MAX_SECONDS = 3600


def _releases(inv):
    return {h: current_release(inv, h) for h in group_hosts(inv, "app")}


def _main_pid(inv, host):
    return lab_exec(inv, host, "systemctl", "show", "-p", "MainPID", "--value", "socialsphere.service").stdout.strip()


def _assert_no_lock(inv, hosts):
    for host in hosts:
        held = lab_exec(inv, host, "cat", LOCK, check=False)
        assert held.returncode != 0, f"{host}: a deploy lock is left: {held.stdout}"


def _last_record(inv, host):
    out = lab_exec(inv, host, "tail", "-n", "1", DEPLOY_LOG).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def new_release(lab_inventory):
    before = set(_releases(lab_inventory).values())
    assert len(before) == 1, f"app hosts run different releases: {before}"
    version = build_release("e2e" + time.strftime("%H%M%S"))
    assert version not in before
    return {"old": next(iter(before)), "new": version}


def test_rolling_release_under_load_has_zero_failed_requests(lab_inventory, new_release):
    edge = Edge.from_inventory(lab_inventory)
    apps = group_hosts(lab_inventory, "app")
    version, previous = new_release["new"], new_release["old"]

    with HaproxyWatch(lab_inventory) as watch, LoadGenerator(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
        time.sleep(3)
        t0 = time.monotonic()
        res = fab("deploy", "--version", version)
        deploy_seconds = time.monotonic() - t0
        time.sleep(3)
    print(res.stdout[-4000:])
    print(f"deploy {previous} -> {version}: {deploy_seconds:.0f}s; {load.result.summary()}")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert not load.ran_out
    assert load.result.total > 100, load.result.summary()
    assert load.result.failed == 0, load.result.summary()
    assert set(_releases(lab_inventory).values()) == {version}
    assert_drained_and_up(lab_inventory, watch, apps, "the rollout")
    _assert_no_lock(lab_inventory, apps)
    for host in apps:
        record = _last_record(lab_inventory, host)
        assert (record["from"], record["to"], record["result"], record["kind"]) == (previous, version, "ok", "deploy")

    # Rollback to what ran before, under load as well.
    with HaproxyWatch(lab_inventory) as watch, LoadGenerator(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
        time.sleep(3)
        t0 = time.monotonic()
        res = fab("rollback", "--version", previous)
        rollback_seconds = time.monotonic() - t0
        time.sleep(3)
    print(f"rollback {version} -> {previous}: {rollback_seconds:.0f}s; {load.result.summary()}")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert not load.ran_out
    assert load.result.total > 50, load.result.summary()
    assert load.result.failed == 0, load.result.summary()
    assert set(_releases(lab_inventory).values()) == {previous}
    for edge_host in group_hosts(lab_inventory, "edge"):
        for host in apps:
            assert "DRAIN" in watch.seen.get((edge_host, host), set()), (edge_host, host, watch.seen)


def test_failed_release_leaves_the_old_one_serving(lab_inventory, new_release):
    """The new release is installed everywhere but its workers crash on the first app
    host (its WSGI module raises when Gunicorn imports it; the Flask CLI, which the
    migration check runs on that host, still loads it). `fab deploy` must stop there,
    put that host back on the old release and into rotation, leave the other hosts
    alone, release the deploy lock everywhere, and the load must not notice."""
    inv = lab_inventory
    edge = Edge.from_inventory(inv)
    apps = group_hosts(inv, "app")
    version, previous = new_release["new"], new_release["old"]
    assert set(_releases(inv).values()) == {previous}
    broken, others = apps[0], apps[1:]
    release_dir = f"{ROOT}/releases/{version}"
    if lab_exec(inv, broken, "test", "-f", f"{release_dir}/venv/.complete", check=False).returncode:
        rc, out = run_playbook("app.yml", "-e", f"socialsphere_release={version}", "-e", "app_activate=false",
                               "-e", "app_preflight=false")
        assert rc == 0, out[-4000:]
    res = lab_exec(inv, broken, "sh", "-c",
                   f"set -e; f=$(ls {release_dir}/venv/lib/python3*/site-packages/socialsphere/wsgi.py); "
                   "printf '%s\\n' 'import sys as _sys' 'if \"gunicorn\" in _sys.argv[0]:' "
                   "'    raise RuntimeError(\"e2e: this release is broken\")' >> \"$f\"; echo \"$f\"")
    assert res.returncode == 0, res.stderr
    pids_before = {h: _main_pid(inv, h) for h in others}
    # Shorter waits for the broken release (each 10 x 2 s instead of 30 x 2 s).
    retries = os.environ.get("SSAI_E2E_READY_RETRIES", "10")
    try:
        with LoadGenerator(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
            time.sleep(3)
            t0 = time.monotonic()
            res = fab("deploy", "--version", version,
                      env={"SSAI_PLAYBOOK_ARGS": f"-e socialsphere_app_readyz_retries={retries}"})
            seconds = time.monotonic() - t0
            time.sleep(3)
        print(res.stdout[-4000:])
        print(f"failed deploy of {version}: fab exit {res.returncode} after {seconds:.0f}s; {load.result.summary()}")
        assert res.returncode != 0, res.stdout[-3000:]
        said = " ".join((res.stdout + res.stderr).split())  # Ansible folds long messages
        assert f"stopped at {broken}" in said, res.stdout[-3000:] + res.stderr[-3000:]
        assert f"back on {previous}, in rotation again" in said, res.stdout[-3000:] + res.stderr[-3000:]
        assert not load.ran_out
        assert load.result.total > 50, load.result.summary()
        assert load.result.failed == 0, load.result.summary()
        assert _releases(inv) == {h: previous for h in apps}
        # the broken host serves the old release again; later hosts were never touched
        addr = host_address(inv, broken)
        ready = lab_exec(inv, broken, "curl", "-fsS", f"http://{addr}:8000/readyz", check=False)
        assert ready.returncode == 0, ready.stdout + ready.stderr
        assert {h: _main_pid(inv, h) for h in others} == pids_before
        for edge_host in group_hosts(inv, "edge"):
            servers = haproxy_servers(inv, edge_host)
            for host in apps:
                assert servers[host]["status"].startswith("UP"), (edge_host, host, servers[host]["status"])
        # The failed deploy left no lock and said what happened on every host.
        _assert_no_lock(inv, apps)
        record = _last_record(inv, broken)
        assert (record["from"], record["to"], record["result"]) == (previous, version, "rolled-back"), record
        assert record["message"].endswith(f"back on {previous}, in rotation again"), record
        for host in others:
            assert _last_record(inv, host)["result"] == "not-started"
        # Nothing blocks the rollback an operator runs next (every host is back already).
        res = fab("rollback", "--version", previous)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "held by" not in res.stdout + res.stderr
    finally:
        # Never leave a broken release where `fab rollback` could pick it.
        for host in apps:
            lab_exec(inv, host, "rm", "-rf", release_dir, check=False)


def test_second_deploy_of_the_same_release_changes_nothing(lab_inventory):
    version = next(iter(set(_releases(lab_inventory).values())))
    res = fab("deploy", "--version", version)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    recap = parse_recap(res.stdout)
    for host in group_hosts(lab_inventory, "app") + group_hosts(lab_inventory, "edge"):
        assert recap[host]["changed"] == 0, (host, recap[host], res.stdout[-3000:])
    _assert_no_lock(lab_inventory, group_hosts(lab_inventory, "app"))


def test_status_reports_release_and_haproxy_states(lab_inventory):
    res = fab("status")
    assert res.returncode == 0, res.stderr[-3000:]
    for host in group_hosts(lab_inventory, "app"):
        assert host in res.stdout
    assert "be_app" in res.stdout
