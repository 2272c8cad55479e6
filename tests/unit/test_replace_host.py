"""playbooks/replace-host.yml checks its request before it touches any host: each
test runs the real playbook against the complete fixture inventory and expects its
first play (localhost only) to stop with a message that names the problem."""
import pathlib

import pytest

from ansible_run import local_env, run_playbook

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"


def run(*extra):
    return run_playbook(FIXTURE / "hosts.yml", "replace-host.yml", *extra, timeout=300,
                        env=local_env())


@pytest.mark.parametrize("request_", ["", "app9", "app1,nosuchhost", " , "])
def test_a_request_without_known_hosts_is_refused_with_the_known_ones(request_):
    rc, out = run("-e", f"replace_host={request_}")
    assert rc != 0
    assert "Name the host(s) to replace with -e replace_host=" in out, out[-2000:]
    assert "known hosts: " in out and "app1" in out
    unknown = [h.strip() for h in request_.split(",") if h.strip() and h.strip() != "app1"]
    if unknown:
        assert f"(unknown: {', '.join(unknown)})" in out, out[-2000:]
    assert "Wait until the new machine answers" not in out


def test_the_database_primary_is_refused_also_among_several_hosts():
    rc, out = run("-e", "replace_host=app1,db1")
    assert rc != 0
    assert "db1 is the database primary in the inventory. Fail over first" in out, out[-2000:]
    assert "Wait until the new machine answers" not in out
