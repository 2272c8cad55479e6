"""The firewall role's reading of ufw's files (roles/firewall/filter_plugins/ufw_state.py).

The lines are what the role's grep printed on a Debian 12 host after ufw 0.36
added the rules with the same arguments the role gives the ufw module.
"""
import importlib.util
import pathlib

import pytest

PLUGIN = pathlib.Path(__file__).parents[2] / "roles" / "firewall" / "filter_plugins" / "ufw_state.py"
spec = importlib.util.spec_from_file_location("ufw_state", PLUGIN)
ufw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ufw)

GREP = """\
/etc/default/ufw:IPV6=yes
/etc/default/ufw:DEFAULT_INPUT_POLICY="DROP"
/etc/default/ufw:DEFAULT_OUTPUT_POLICY="ACCEPT"
/etc/default/ufw:DEFAULT_FORWARD_POLICY="DROP"
/etc/ufw/ufw.conf:ENABLED=yes
/etc/ufw/ufw.conf:LOGLEVEL=low
/etc/ufw/user.rules:### tuple ### allow tcp 22 0.0.0.0/0 any 172.30.77.1 in comment=736f6369616c7370686572653a2053534820636f6e74726f6c206e6f6465
/etc/ufw/user.rules:### tuple ### limit tcp 22 0.0.0.0/0 any 10.0.0.0/8 in comment=736f6369616c7370686572653a20535348
/etc/ufw/user.rules:### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment=736f6369616c7370686572653a2048545450
/etc/ufw/user.rules:### tuple ### allow vrrp any 0.0.0.0/0 any 172.30.77.32 in comment=736f6369616c7370686572653a2056525250
/etc/ufw/user.rules:### tuple ### allow tcp 5432 0.0.0.0/0 any 172.30.77.21 in comment=736f6369616c7370686572653a20506f737467726553514c
/etc/ufw/user6.rules:### tuple ### allow tcp 80 ::/0 any ::/0 in comment=736f6369616c7370686572653a2048545450
""".splitlines()

HELD = [
    {"rule": "allow", "proto": "tcp", "port": 22, "from": "172.30.77.1", "comment": "socialsphere: SSH control node"},
    {"rule": "limit", "proto": "tcp", "port": "22", "from": "10.0.0.0/8", "comment": "socialsphere: SSH"},
    {"rule": "allow", "proto": "tcp", "port": 80, "from": "any", "comment": "socialsphere: HTTP"},
    {"rule": "allow", "proto": "vrrp", "port": "", "from": "172.30.77.32", "comment": "socialsphere: VRRP"},
    {"rule": "allow", "proto": "tcp", "port": 5432, "from": "172.30.77.21/32", "comment": "socialsphere: PostgreSQL"},
]


def test_settings_are_read():
    state = ufw.ufw_state(GREP)
    assert state["enabled"] is True
    assert state["logging"] == "low"
    assert state["ipv6"] is True
    assert state["policies"] == {"incoming": "deny", "outgoing": "allow", "routed": "deny"}
    assert len(state["rules"]) == 6


def test_held_rules_are_not_missing():
    assert ufw.ufw_missing(HELD, ufw.ufw_state(GREP)) == []


@pytest.mark.parametrize("change", [
    {"rule": "limit"},                          # same rule, other action
    {"proto": "udp"},
    {"port": 2222},
    {"from": "172.30.77.2"},
    {"from": "10.0.0.0/16"},
    {"comment": "socialsphere: renamed"},       # ufw updates the comment
])
def test_any_difference_is_missing(change):
    wanted = dict(HELD[0], **change)
    assert ufw.ufw_missing([wanted], ufw.ufw_state(GREP)) == [wanted]


def test_rule_from_anywhere_needs_both_families_when_ipv6_is_on():
    https = {"rule": "allow", "proto": "tcp", "port": 80, "from": "any", "comment": "socialsphere: HTTP"}
    v4_only = [line for line in GREP if not line.startswith("/etc/ufw/user6.rules")]
    assert ufw.ufw_missing([https], ufw.ufw_state(v4_only)) == [https]
    ipv6_off = [line.replace("IPV6=yes", "IPV6=no") for line in v4_only]
    assert ufw.ufw_missing([https], ufw.ufw_state(ipv6_off)) == []


def test_fresh_install_and_no_files():
    fresh = [line.replace("ENABLED=yes", "ENABLED=no") for line in GREP if "### tuple" not in line]
    state = ufw.ufw_state(fresh)
    assert state["enabled"] is False
    assert ufw.ufw_missing(HELD, state) == HELD
    nothing = ufw.ufw_state([])
    assert nothing["enabled"] is False and nothing["logging"] is None and nothing["policies"] == {}
    assert ufw.ufw_missing(HELD, nothing) == HELD


def test_unreadable_lines_cost_a_module_run_not_a_rule():
    garbled = GREP + ["/etc/ufw/user.rules:### tuple ### allow tcp", "no separator", "/etc/ufw/ufw.conf:junk"]
    assert ufw.ufw_missing(HELD, ufw.ufw_state(garbled)) == []
    bad_source = dict(HELD[0], **{"from": "not-an-address"})
    assert ufw.ufw_missing([bad_source], ufw.ufw_state(GREP)) == [bad_source]
