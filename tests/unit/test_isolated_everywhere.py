"""A host of the inventory group `isolated` (compromised: playbooks/isolate-host.yml) is
left out of every play that converges hosts: site.yml and what it imports, and the
operations playbooks that run on hosts of the inventory. A play added without
`:!isolated` would converge the compromised host again (and hand it new secrets)."""
import functools
import pathlib

import pytest
import yaml

PLAYBOOKS = pathlib.Path(__file__).resolve().parents[2] / "playbooks"
# Every playbook: site.yml, what it imports, and each operation (a new one is checked too).
OPERATIONS = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))
# Plays on hosts named by the request or built at run time, not on inventory groups.
REQUESTED = {"{{ replace_host | default([]) }}", "{{ isolate_host | default([]) }}",
             "{{ (isolate_host | trim ~ ':&edge') if isolate_host is defined else [] }}",
             "patch_wave_other", "patch_wave_db_replica", "patch_wave_db_primary",
             "db_failover_old:db_failover_new", "db_failover_old", "{{ db_restore_host | default('db[0]') }}"}


def plays(name, seen=None):
    """(playbook, play) of `name` and of every playbook it imports, once each."""
    seen = set() if seen is None else seen
    if name in seen:
        return
    seen.add(name)
    for play in yaml.safe_load((PLAYBOOKS / name).read_text()):
        if "ansible.builtin.import_playbook" in play:
            yield from plays(play["ansible.builtin.import_playbook"], seen)
        else:
            yield name, play


@functools.cache
def host_plays():
    found = {}
    for top in OPERATIONS:
        for name, play in plays(top):
            hosts = " ".join(str(play["hosts"]).split())
            if hosts != "localhost" and hosts not in REQUESTED:
                found[f"{name}: {play['name']}"] = hosts
    return found


def test_the_playbooks_have_plays_on_inventory_groups():
    found = host_plays()
    assert len(found) > 30, found
    assert "base.yml: Configure the base system and hardening" in found


@pytest.mark.parametrize("play", sorted(host_plays()))
def test_every_play_on_inventory_groups_leaves_isolated_hosts_out(play):
    hosts = host_plays()[play]
    assert "!isolated" in hosts or "groups['isolated']" in hosts, f"{play}: hosts: {hosts}"
