"""What ufw holds on a host, read from its files, and which wanted rules it lacks.

The community.general.ufw module starts ufw (a Python program) four times per
rule, even when the rule exists: about a second of CPU per rule and host, the
firewall role's largest cost in a run that changes nothing. The role instead
reads ufw's files once (one grep) and calls the module only for what differs.

The grep prints ``file:line`` for these lines:

* ``/etc/ufw/ufw.conf``: ``ENABLED=yes|no`` and ``LOGLEVEL=...`` (``ufw status``
  reports the logging level from the latter; it calls the firewall "active"
  only when ufw's chains are loaded, which the role checks with iptables);
* ``/etc/default/ufw``: ``IPV6=yes|no`` and the three ``DEFAULT_*_POLICY``;
* ``/etc/ufw/user.rules`` and ``user6.rules``: one comment line per rule added
  with ``ufw allow|limit ...``::

      ### tuple ### allow tcp 22 0.0.0.0/0 any 172.30.77.1 in comment=736f...

  action, protocol, destination port, destination, source port, source,
  direction, and the comment hex-encoded.

A wanted rule counts as held only when a tuple has the same action, protocol,
port, source network and comment (and, for a rule from anywhere, in both
families when IPv6 is on). Anything else goes to the module, which is the
authority: a rule this filter misreads costs a module run, never a missing rule.
"""

import ipaddress

_POLICY = {"DROP": "deny", "REJECT": "reject", "ACCEPT": "allow"}
_DIRECTION = {
    "DEFAULT_INPUT_POLICY": "incoming",
    "DEFAULT_OUTPUT_POLICY": "outgoing",
    "DEFAULT_FORWARD_POLICY": "routed",
}
_ANY = {4: "0.0.0.0/0", 6: "::/0"}


def _network(text):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _unquote(value):
    return value.strip().strip('"').strip("'")


def ufw_state(lines):
    """Parse the grep's ``file:line`` output into a dict.

    Keys: ``enabled`` (bool), ``logging`` (str or None), ``ipv6`` (bool),
    ``policies`` ({incoming|outgoing|routed: deny|reject|allow}) and ``rules``
    (a list of (action, proto, port, source network, comment) tuples).
    """
    state = {"enabled": False, "logging": None, "ipv6": True, "policies": {}, "rules": []}
    for entry in lines:
        _, sep, line = entry.partition(":")
        if not sep:
            continue
        line = line.strip()
        if line.startswith("### tuple ###"):
            rule = _tuple(line)
            if rule is not None:
                state["rules"].append(rule)
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = _unquote(value)
        if key == "ENABLED":
            state["enabled"] = value.lower() == "yes"
        elif key == "LOGLEVEL":
            state["logging"] = value.lower()
        elif key == "IPV6":
            state["ipv6"] = value.lower() == "yes"
        elif key in _DIRECTION:
            state["policies"][_DIRECTION[key]] = _POLICY.get(value.upper(), value.lower())
    return state


def _tuple(line):
    fields = line[len("### tuple ###"):].split()
    # action proto dport dst sport src direction [comment=hex]
    if len(fields) < 7:
        return None
    action, proto, dport, dst, _sport, src, direction = fields[:7]
    comment = ""
    for extra in fields[7:]:
        if extra.startswith("comment="):
            try:
                comment = bytes.fromhex(extra[len("comment="):]).decode("utf-8")
            except ValueError:
                comment = None
    # An outgoing rule (the role's only ones are the denies of isolated hosts)
    # is keyed by its destination, its action marked "<action> out".
    if direction.startswith("out"):
        action, src = f"{action} out", dst
    network = _network(src)
    if network is None:
        return None
    return (action, proto, dport, network, comment)


def ufw_missing(wanted, state):
    """The items of ``wanted`` that ``state`` (from ufw_state) does not hold.

    Each item is a dict with ``rule`` (allow|limit|deny), ``proto`` (``any``
    for a deny of everything from a host), ``port`` ('' for none), ``from``
    ('any', an address or a network), ``comment`` and optionally ``direction``
    (``out``: an outgoing rule, whose address is ``to`` instead of ``from``);
    the items are returned unchanged, in order, for the ufw module's loop.
    """
    held = set(state.get("rules", []))
    missing = []
    for item in wanted:
        port = str(item.get("port", "")).strip() or "any"
        outgoing = item.get("direction", "in") == "out"
        source = str(item["to"] if outgoing else item["from"]).strip()
        if source == "any":
            families = [4, 6] if state.get("ipv6", True) else [4]
            networks = [ipaddress.ip_network(_ANY[f]) for f in families]
        else:
            network = _network(source)
            networks = [network] if network is not None else []
        key = (str(item["rule"]) + (" out" if outgoing else ""), str(item["proto"]), port)
        comment = str(item.get("comment", ""))
        if not networks or any(key + (n, comment) not in held for n in networks):
            missing.append(item)
    return missing


def ufw_stale_denies(state, wanted, prefix):
    """The deny rules ``state`` holds whose comment starts with ``prefix`` (the role's
    denies of isolated hosts) and that no item of ``wanted`` asks for: a host that
    left firewall_denied_hosts, or that moved to another address. Each is returned
    as ``{"from": <address or network>, "comment": <its comment>}`` (an outgoing
    one as ``{"to": ..., "direction": "out", ...}``) for the ufw module's
    ``delete``. Other deny rules (fail2ban's bans, an operator's) are never
    returned."""
    keep = set()
    for item in wanted:
        outgoing = item.get("direction", "in") == "out"
        network = _network(str(item["to"] if outgoing else item["from"]).strip())
        if network is not None:
            keep.add(("deny out" if outgoing else "deny", network, str(item.get("comment", ""))))
    stale = []
    for action, _proto, _port, network, comment in state.get("rules", []):
        if action not in ("deny", "deny out") or not (comment or "").startswith(prefix):
            continue
        if (action, network, comment) in keep:
            continue
        single = network.prefixlen == network.max_prefixlen
        address = str(network.network_address) if single else str(network)
        if action == "deny out":
            item = {"to": address, "direction": "out", "comment": comment}
        else:
            item = {"from": address, "comment": comment}
        if item not in stale:
            stale.append(item)
    return stale


class FilterModule:
    """ufw state filters of the firewall role."""

    def filters(self):
        return {"firewall_ufw_state": ufw_state, "firewall_ufw_missing": ufw_missing,
                "firewall_ufw_stale_denies": ufw_stale_denies}
