"""playbooks/isolate-host.yml checks its request before it touches any host: each test
runs the real playbook against the complete fixture inventory, with the hosts of group
`isolated` it names, and expects the first play (localhost only) to stop with a message
that names the problem and the variable that decides; nothing after it runs.

The fixture's hosts all use the local connection: a request that passes the checks would
go on to run the next plays on this machine, so the one accepted request below is
stopped right after the checks by an edge host that has no HAProxy client."""
import pathlib

import pytest
import yaml

from ansible_run import local_env, run_playbook

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
FIRST_ACTION = "PLAY [Take the app host out of rotation in every HAProxy]"


def inventory(tmp_path, isolated=(), drop=(), db_vars=None, no_address=()):
    """The fixture inventory (its group_vars linked) with `isolated` in group isolated,
    the hosts of `drop` removed, `db_vars` added to group db's vars, and an ansible_host
    (a documentation address) for every host but those of `no_address`."""
    data = yaml.safe_load((FIXTURE / "hosts.yml").read_text())
    children = data["all"]["children"]
    for group in children.values():
        for host in drop:
            (group.get("hosts") or {}).pop(host, None)
    for name, hosts in children.items():
        for host in (hosts.get("hosts") or {}):
            if host in no_address:
                continue
            children[name]["hosts"][host] = dict(children[name]["hosts"][host] or {},
                                                 ansible_host=f"192.0.2.{10 + sorted(children).index(name)}{len(host)}")
    children["isolated"] = {"hosts": {h: {} for h in isolated}}
    if db_vars:
        children["db"]["vars"] = db_vars
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "group_vars").symlink_to(FIXTURE / "group_vars")
    return tmp_path / "hosts.yml"


def run(inv, *extra):
    return run_playbook(inv, "isolate-host.yml", *extra, timeout=300, env=local_env())


def refused(out):
    assert "PLAY RECAP" in out
    assert FIRST_ACTION not in out, out[-3000:]


@pytest.mark.parametrize("request_", ["", "app9", "app1,app2", "app"])
def test_a_request_that_is_not_one_known_host_is_refused(tmp_path, request_):
    rc, out = run(inventory(tmp_path, isolated=["app1"]), "-e", f"isolate_host={request_}")
    assert rc != 0
    assert "Name the one host to isolate with -e isolate_host=<inventory name>" in out, out[-3000:]
    assert f"found '{request_}'" in out and "Known hosts: " in out
    refused(out)


def test_a_host_not_marked_isolated_in_the_inventory_is_refused(tmp_path):
    rc, out = run(inventory(tmp_path), "-e", "isolate_host=app2")
    assert rc != 0
    assert "app2 is not in the inventory group isolated. Add it there first" in out, out[-3000:]
    refused(out)


def test_the_database_primary_is_refused_with_the_pointer_to_fail_over(tmp_path):
    rc, out = run(inventory(tmp_path, isolated=["db1"]), "-e", "isolate_host=db1")
    assert rc != 0
    assert "db1 is the database primary: cutting it off stops every write. Fail over first" in out, out[-3000:]
    assert "playbooks/db-failover.yml" in out
    refused(out)


@pytest.mark.parametrize(("host", "isolated", "drop", "why"), [
    ("app2", ["app2"], ["app1"], "the last app host in rotation"),
    ("app2", ["app1", "app2"], [], "the last app host in rotation"),
    ("edge1", ["edge1"], ["edge2"], "the only edge host: the VIP and the site would go with it"),
    ("backup1", ["backup1"], ["backup2"], "the last repository host"),
    ("mon1", ["mon1"], [], "the only monitoring host"),
])
def test_the_last_host_of_a_tier_in_service_is_refused_unless_forced(tmp_path, host, isolated, drop, why):
    inv = inventory(tmp_path, isolated=isolated, drop=drop)
    rc, out = run(inv, "-e", f"isolate_host={host}")
    assert rc != 0
    assert f"{host} is {why}" in out, out[-3000:]
    assert "-e isolate_force=true" in out
    refused(out)
    # Forced: the checks pass (the run then stops at its first host action, see the docstring).
    rc, out = run(inv, "-e", f"isolate_host={host}", "-e", "isolate_force=true")
    assert f"{host} is {why}" not in out, out[-3000:]
    assert "Record the request" in out and "ok: [localhost]" in out, out[-3000:]


def test_the_last_replica_is_refused_in_synchronous_replication_only(tmp_path):
    sync = inventory(tmp_path, isolated=["db2"], db_vars={"postgresql_synchronous_replication": True})
    rc, out = run(sync, "-e", "isolate_host=db2")
    assert rc != 0
    assert "db2 is the last replica in synchronous replication" in out, out[-3000:]
    refused(out)


def test_a_host_without_an_address_is_refused(tmp_path):
    inv = inventory(tmp_path, isolated=["app2"], no_address=["app2"])
    rc, out = run(inv, "-e", "isolate_host=app2")
    assert rc != 0
    assert "app2 has no ansible_host address in the inventory" in out, out[-3000:]
    refused(out)


def test_an_app_host_with_another_in_service_passes_the_checks(tmp_path):
    """The checks pass; the next play asks the edge hosts' HAProxy (absent on this machine),
    so the run stops there, before any change."""
    rc, out = run(inventory(tmp_path, isolated=["app2"]), "-e", "isolate_host=app2")
    assert FIRST_ACTION in out, out[-3000:]
    assert "Read the app servers of this HAProxy" in out
    assert rc != 0  # no /usr/local/sbin/ssai-haproxy here
    assert "PLAY [Cut the host off on every other host]" not in out
