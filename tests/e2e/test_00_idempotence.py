"""The idempotence gate: `make lab` has converged the lab once; a second
site.yml run must change nothing on any host. Runs first (file name) so that
the failure drills of later tests cannot disturb it."""
from labkit.inventory import parse_recap, run_playbook


def test_second_site_run_changes_nothing(lab_inventory):
    rc, out = run_playbook("site.yml")
    assert rc == 0, out[-5000:]
    recap = parse_recap(out)
    lab_hosts = set(lab_inventory["_meta"]["hostvars"])
    assert lab_hosts <= set(recap), f"hosts missing from the recap: {lab_hosts - set(recap)}"
    changed = {h: c["changed"] for h, c in recap.items() if c.get("changed")}
    failed = {h: c for h, c in recap.items() if c.get("failed") or c.get("unreachable")}
    # Show which tasks changed, to make a regression easy to find.
    changed_tasks, task = [], ""
    for line in out.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:"):
            changed_tasks.append(f"{task} {line}")
    assert not failed, failed
    assert not changed, f"second run changed {changed}:\n" + "\n".join(changed_tasks[:50])


def test_a_run_limited_to_one_edge_host_converges_it(lab_inventory):
    """What the edge runbook tells an operator to run for one host
    (`site.yml --limit edgeN`, docs/runbooks/edge-operations.md): it failed when the
    release version came from a play on localhost, which --limit skips."""
    edge = lab_inventory["edge"]["hosts"][-1]
    rc, out = run_playbook("site.yml", "--limit", edge)
    assert rc == 0, out[-5000:]
    recap = parse_recap(out)
    assert set(recap) == {edge}, recap
    assert recap[edge]["changed"] == 0 and recap[edge]["failed"] == 0, recap
