"""Jinja tests used by playbooks/preflight.yml."""


def ssai_var_present(host, hostvars, name):
    """True when `name` is defined for `host` and is not empty.

    Reading the value templates it (vault values included), so a variable
    that points at a missing vault_ variable counts as missing too.
    """
    try:
        value = hostvars[host][name]
    except Exception:  # undefined, or a template that references something undefined
        return False
    if value is None:
        return False
    if isinstance(value, (str, list, dict)) and len(value) == 0:
        return False
    return True


class TestModule:
    """Ansible test plugin entry point."""

    def tests(self):
        return {"ssai_var_present": ssai_var_present}
