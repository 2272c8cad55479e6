"""Rolling release under load: `fab deploy` of a new release, then `fab rollback`,
each while constant read traffic flows through the edge VIP; 0 failed requests.

The new release is the checkout's sources re-versioned (`scripts/build-release
--version-suffix e2e<N>`): the code path of a real release (upload, offline
install, migration check, drain, switch, HUP, /readyz, ready) without needing a
code change. HAProxy's retries are on in the lab; the test also checks that every
host was drained (HAProxy saw it DRAIN) rather than relying on them.
"""
import time

from test_app_support import (Edge, LoadGenerator, build_release, current_release, fab,
                              group_hosts, haproxy_servers)


def _releases(inv):
    return {h: current_release(inv, h) for h in group_hosts(inv, "app")}


def test_rolling_release_under_load_has_zero_failed_requests(lab_inventory):
    edge = Edge.from_inventory(lab_inventory)
    before = _releases(lab_inventory)
    suffix = "e2e" + time.strftime("%H%M%S")
    version = build_release(suffix)
    assert version not in before.values()

    with LoadGenerator(edge) as load:
        time.sleep(3)
        res = fab("deploy", "--version", version)
        time.sleep(3)
    print(res.stdout[-4000:])
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert load.result.total > 100, load.result.summary()
    assert load.result.failed == 0, load.result.summary()
    assert set(_releases(lab_inventory).values()) == {version}
    for host in group_hosts(lab_inventory, "app"):
        assert f"{host}: " in res.stdout and "drain" in res.stdout
    for edge_host in group_hosts(lab_inventory, "edge"):
        servers = haproxy_servers(lab_inventory, edge_host)
        for host in group_hosts(lab_inventory, "app"):
            assert servers[host]["status"].startswith("UP"), (edge_host, host, servers[host]["status"])

    # Rollback to what ran before, under load as well.
    previous = next(iter(set(before.values())))
    with LoadGenerator(edge) as load:
        time.sleep(3)
        res = fab("rollback", "--version", previous)
        time.sleep(3)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert load.result.failed == 0, load.result.summary()
    assert set(_releases(lab_inventory).values()) == {previous}


def test_second_deploy_of_the_same_release_changes_nothing(lab_inventory):
    version = next(iter(set(_releases(lab_inventory).values())))
    res = fab("deploy", "--version", version, "--skip-prepare")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for host in group_hosts(lab_inventory, "app"):
        assert f"{host}: already on {version}" in res.stdout


def test_status_reports_release_and_haproxy_states(lab_inventory):
    res = fab("status")
    assert res.returncode == 0, res.stderr[-3000:]
    for host in group_hosts(lab_inventory, "app"):
        assert host in res.stdout
    assert "be_app" in res.stdout
