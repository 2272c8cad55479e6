"""Rolling release under load: `fab deploy` of a new release, then `fab rollback`,
each while users' traffic flows through the edge VIP (userload: virtual users with
their own accounts reading the dashboard, writing, editing and deleting posts,
refreshing their tokens); 0 failed requests and 0 acknowledged writes lost. Then a
release that cannot start (its code crashes Gunicorn's workers on one host) stops the
rollout there and leaves the old release serving, again under load, and its deploy
lock does not block the rollback that follows.

Fabric runs playbooks/app.yml, the playbook site.yml runs (one activation path):
these drills measure that path. The new release is the checkout's sources
re-versioned (`scripts/build-release --version-suffix e2e<N>`): the code path of a
real release (upload, offline install, migration check, drain, switch, HUP, every
worker on the release, /readyz, ready) without needing a code change.

Measured with HAProxy's retries off: the module first converges the edge hosts'
HAProxy with `haproxy_retry_enabled=false` (`playbooks/edge.yml --tags haproxy`:
`retries 0`, `retry-on none`, hitless reload) and converges it back at the end, so a
request the release fails reaches the load instead of being retried on another host.
SSAI_E2E_L7_RETRIES=on measures with the production retries instead. Should a run be
killed before it restores them: `ansible-playbook -i inventories/lab/hosts.yml
playbooks/edge.yml --tags haproxy`. The test also watches every HAProxy during the
rollout and requires each app host to have been seen in DRAIN there (drained before
its switch), and prints each app host's time out of rotation (from its drain in the
first HAProxy to UP in the last one: the host's own activation) against the goal of
15 s per host, with the failed requests of that time; the goal is printed, not
asserted (a shared, noisy machine).
"""
import json
import os
import time

import pytest

from labkit.edge import Edge
from labkit.haproxy import assert_drained_and_up, haproxy_servers, haproxy_stream
from labkit.hosts import group_hosts, host_address, lab_exec
from labkit.inventory import parse_recap, run_playbook
from labkit.release import build_release, current_release, fab
from labkit.rotation import RotationWatch, per_host_report
from labkit.userload import lab_user_load

ROOT = "/srv/socialsphere"
LOCK = f"{ROOT}/.deploy-lock"
DEPLOY_LOG = "/var/log/socialsphere/deploys.log"
# The load covers the whole `fab deploy`, whose prepare step (install on every app
# host + migrate) takes 15+ minutes on this machine when it is loaded.
DEPLOY_MAX_SECONDS = 3600
# The goal per app host, from its drain to back in rotation (issue 13 item 4).
GOAL_SECONDS_PER_HOST = 15
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
L7_RETRIES = os.environ.get("SSAI_E2E_L7_RETRIES", "off")


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


def _retry_lines(inv):
    """Each edge host's retry settings in its HAProxy configuration."""
    lines = {}
    for edge_host in group_hosts(inv, "edge"):
        text = lab_exec(inv, edge_host, "cat", HAPROXY_CFG).stdout
        lines[edge_host] = [line.strip() for line in text.splitlines()
                            if line.strip().startswith(("retries", "retry-on", "option redispatch"))]
    return lines


@pytest.fixture(scope="module")
def retries_off(lab_inventory):
    """HAProxy without retries on every edge host for this module's measurements; the
    production retries again afterwards."""
    inv = lab_inventory
    if L7_RETRIES == "on":
        print(f"measured with HAProxy's retries on (SSAI_E2E_L7_RETRIES=on): {_retry_lines(inv)}")
        yield "on"
        return
    rc, out = run_playbook("edge.yml", "--tags", "haproxy", "-e", '{"haproxy_retry_enabled": false}')
    try:
        assert rc == 0, out[-4000:]
        for edge_host, lines in _retry_lines(inv).items():
            assert lines == ["retries 0", "retry-on none"], (edge_host, lines)
        print("measured with HAProxy's retries off on every edge host (retries 0, retry-on none)")
        yield "off"
    finally:
        rc, out = run_playbook("edge.yml", "--tags", "haproxy")
        assert rc == 0, "HAProxy's retries not restored: " + out[-4000:]
        for edge_host, lines in _retry_lines(inv).items():
            assert "retries 0" not in lines and "option redispatch 1" in lines, (edge_host, lines)


def _watch(inv):
    return RotationWatch(group_hosts(inv, "edge"), stream_of=lambda edge_host, interval: haproxy_stream(inv, edge_host,
                                                                                                      interval))


def _figures(what, seconds, t0, watch, load, apps, retries):
    lines, _ = per_host_report(watch.spans(), apps, t0, GOAL_SECONDS_PER_HOST, watch.resolution,
                               load.result.failures_between)
    return "\n".join([f"{what}: {seconds:.0f}s in all, HAProxy retries {retries}; each app host out of rotation:",
                      *lines, f"  load: {load.result.summary()}"])


@pytest.fixture(scope="module")
def new_release(lab_inventory):
    before = set(_releases(lab_inventory).values())
    assert len(before) == 1, f"app hosts run different releases: {before}"
    version = build_release("e2e" + time.strftime("%H%M%S"))
    assert version not in before
    return {"old": next(iter(before)), "new": version}


def test_rolling_release_under_load_has_zero_failed_requests(lab_inventory, new_release, retries_off):
    inv = lab_inventory
    edge = Edge.from_inventory(inv)
    apps = group_hosts(inv, "app")
    version, previous = new_release["new"], new_release["old"]

    with _watch(inv) as watch, lab_user_load(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
        time.sleep(3)
        t0 = time.monotonic()
        res = fab("deploy", "--version", version)
        deploy_seconds = time.monotonic() - t0
        time.sleep(3)
    print(res.stdout[-4000:])
    print(_figures(f"deploy {previous} -> {version}", deploy_seconds, t0, watch, load, apps, retries_off))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert not load.ran_out
    assert load.result.total > 100, load.result.summary()
    assert load.result.failed == 0, load.result.report()
    assert load.result.lost == [] and load.result.incomplete == [], load.result.report()
    assert set(_releases(inv).values()) == {version}
    assert_drained_and_up(inv, watch, apps, "the rollout")
    _assert_no_lock(inv, apps)
    for host in apps:
        record = _last_record(inv, host)
        assert (record["from"], record["to"], record["result"], record["kind"]) == (previous, version, "ok", "deploy")

    # Rollback to what ran before, under load as well.
    with _watch(inv) as watch, lab_user_load(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
        time.sleep(3)
        t0 = time.monotonic()
        res = fab("rollback", "--version", previous)
        rollback_seconds = time.monotonic() - t0
        time.sleep(3)
    print(_figures(f"rollback {version} -> {previous}", rollback_seconds, t0, watch, load, apps, retries_off))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert not load.ran_out
    assert load.result.total > 50, load.result.summary()
    assert load.result.failed == 0, load.result.report()
    assert load.result.lost == [] and load.result.incomplete == [], load.result.report()
    assert set(_releases(inv).values()) == {previous}
    for edge_host in group_hosts(inv, "edge"):
        for host in apps:
            assert "DRAIN" in watch.seen.get((edge_host, host), set()), (edge_host, host, watch.seen)


def test_failed_release_leaves_the_old_one_serving(lab_inventory, new_release, retries_off):
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
        with _watch(inv) as watch, lab_user_load(edge, max_seconds=DEPLOY_MAX_SECONDS) as load:
            time.sleep(3)
            t0 = time.monotonic()
            res = fab("deploy", "--version", version,
                      env={"SSAI_PLAYBOOK_ARGS": f"-e socialsphere_app_readyz_retries={retries}"})
            seconds = time.monotonic() - t0
            time.sleep(3)
        print(res.stdout[-4000:])
        print(_figures(f"failed deploy of {version} (fab exit {res.returncode})", seconds, t0, watch, load, apps,
                       retries_off))
        assert res.returncode != 0, res.stdout[-3000:]
        said = " ".join((res.stdout + res.stderr).split())  # Ansible folds long messages
        assert f"stopped at {broken}" in said, res.stdout[-3000:] + res.stderr[-3000:]
        assert f"back on {previous}, in rotation again" in said, res.stdout[-3000:] + res.stderr[-3000:]
        assert not load.ran_out
        assert load.result.total > 50, load.result.summary()
        assert load.result.failed == 0, load.result.report()
        assert load.result.lost == [] and load.result.incomplete == [], load.result.report()
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
