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


# The denies of an isolated host (firewall_denied_hosts), as ufw 0.36 writes them for
# `ufw insert 1 deny from 172.30.77.22 comment ...` and `ufw insert 1 deny out to ...`.
ISOLATED = "socialsphere: isolated app2"
DENIES = [
    "/etc/ufw/user.rules:### tuple ### deny any any 0.0.0.0/0 any 172.30.77.22 in comment=" + ISOLATED.encode().hex(),
    "/etc/ufw/user.rules:### tuple ### deny any any 172.30.77.22 any 0.0.0.0/0 out comment=" + ISOLATED.encode().hex(),
]
DENY_IN = {"rule": "deny", "proto": "any", "port": "", "from": "172.30.77.22", "comment": ISOLATED}
DENY_OUT = {"rule": "deny", "proto": "any", "port": "", "direction": "out", "to": "172.30.77.22", "comment": ISOLATED}


def test_held_denies_in_and_out_are_not_missing():
    state = ufw.ufw_state(GREP + DENIES)
    assert ufw.ufw_missing([DENY_IN, DENY_OUT], state) == []
    # Each direction is its own rule: the incoming deny does not stand for the outgoing one.
    assert ufw.ufw_missing([DENY_IN, DENY_OUT], ufw.ufw_state(GREP + DENIES[:1])) == [DENY_OUT]
    assert ufw.ufw_missing([DENY_IN, DENY_OUT], ufw.ufw_state(GREP)) == [DENY_IN, DENY_OUT]


def test_an_allow_from_the_host_is_not_a_deny():
    allow = "/etc/ufw/user.rules:### tuple ### allow any any 0.0.0.0/0 any 172.30.77.22 in comment=" + ISOLATED.encode().hex()
    assert ufw.ufw_missing([DENY_IN], ufw.ufw_state(GREP + [allow])) == [DENY_IN]


def test_denies_of_hosts_no_longer_isolated_are_stale():
    state = ufw.ufw_state(GREP + DENIES)
    prefix = "socialsphere: isolated "
    assert ufw.ufw_stale_denies(state, [DENY_IN, DENY_OUT], prefix) == []
    assert ufw.ufw_stale_denies(state, [], prefix) == [
        {"from": "172.30.77.22", "comment": ISOLATED},
        {"to": "172.30.77.22", "direction": "out", "comment": ISOLATED},
    ]
    # The host moved to another address: the old denies go, the new ones are missing.
    moved_in, moved_out = dict(DENY_IN, **{"from": "172.30.77.99"}), dict(DENY_OUT, to="172.30.77.99")
    assert len(ufw.ufw_stale_denies(state, [moved_in, moved_out], prefix)) == 2
    assert ufw.ufw_missing([moved_in, moved_out], state) == [moved_in, moved_out]


def test_other_denies_are_never_stale():
    """fail2ban's bans and an operator's own denies are not the role's to delete."""
    ban = "/etc/ufw/user.rules:### tuple ### deny any any 0.0.0.0/0 any 203.0.113.7 in comment=" + b"f2b sshd".hex()
    plain = "/etc/ufw/user.rules:### tuple ### deny tcp 25 0.0.0.0/0 any 0.0.0.0/0 out"
    state = ufw.ufw_state(GREP + [ban, plain])
    assert ufw.ufw_stale_denies(state, [], "socialsphere: isolated ") == []
