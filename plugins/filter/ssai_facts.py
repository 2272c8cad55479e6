"""Facts of the deployment that playbooks, roles, Fabric and tests share: one place each.

Jinja filters (``ansible.cfg``: ``filter_plugins = plugins/filter``; Molecule sets
``ANSIBLE_FILTER_PLUGINS``):

- ``ansible_facts | ssai_postgresql_version``: the PostgreSQL major version of the
  host's distribution release (the distribution's own packages), e.g. ``"16"``.
- ``groups['db'] | ssai_postgresql_role_hosts(hostvars, 'primary')``: the hosts whose
  ``postgresql_role`` is ``primary`` (or ``replica``), in inventory order.
- ``inventory_hostname | ssai_role_var(hostvars, 'socialsphere_app_port')``: a role
  variable as a host sees it: the inventory's value if it sets one, else the default in
  ``roles/<role>/defaults/main.yml`` (the role is the variable's prefix). For playbooks
  that need another tier's setting without applying its role (the edge needs the app
  hosts' Gunicorn port).
- ``'35s' | ssai_haproxy_seconds``: an HAProxy time in seconds (preflight compares
  HAProxy's and Gunicorn's timeouts).
- ``'time' | ssai_pgbackrest_restore_options(target, repo)``: the recovery options of a
  ``pgbackrest restore`` (type, target, target action, repository), the same for a
  scratch restore (playbooks/db-restore.yml) and an in-place one (roles/postgresql
  ``tasks_from: restore``: db-restore.yml, rebuild-db-tier.yml).
- ``app_batch | ssai_release_batch``: the batch size of a rollout (``serial`` of
  playbooks/app.yml's activation), a number of hosts or a percentage of the app hosts;
  ``fab deploy --batch`` checks its argument with the same function.
- ``app_batch | ssai_release_batch_hosts(groups['app'] | length)``: how many app hosts
  one batch takes out of rotation at once (app.yml refuses a batch of every app host).

The plain functions below are importable without Ansible (``fabfile.py`` and the tests
import this file by path).
"""
from __future__ import annotations

from pathlib import Path

import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"

# Distribution and its major release (Ansible's `distribution`, `distribution_major_version`)
# -> the PostgreSQL major version its archive ships. Extend it with
# playbooks/vars/preflight.yml's preflight_supported_os (a unit test checks they agree).
POSTGRESQL_VERSIONS = {
    ("Ubuntu", "24"): "16",
    ("Debian", "12"): "15",
}

POSTGRESQL_ROLES = ("primary", "replica")


def postgresql_version(distribution: str, major_version: str) -> str:
    """The PostgreSQL major version of a distribution release; ValueError if unsupported."""
    try:
        return POSTGRESQL_VERSIONS[(str(distribution), str(major_version))]
    except KeyError:
        known = ", ".join(f"{d} {v}" for d, v in POSTGRESQL_VERSIONS)
        raise ValueError(f"no PostgreSQL version known for {distribution} {major_version} (known: {known})") from None


def postgresql_version_of_os_release(text: str) -> str:
    """The same, for a host's /etc/os-release (ID and VERSION_ID; Python that reads hosts)."""
    info = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    distribution = info.get("ID", "").strip().strip('"').capitalize()
    major = info.get("VERSION_ID", "").strip().strip('"').split(".")[0]
    return postgresql_version(distribution, major)


def postgresql_role_hosts(hosts, hostvars, role: str) -> list[str]:
    """The hosts of `hosts` whose postgresql_role is `role`, in the order given."""
    if role not in POSTGRESQL_ROLES:
        raise ValueError(f"postgresql_role is one of {', '.join(POSTGRESQL_ROLES)}, not {role!r}")
    found = []
    for host in hosts:
        try:
            value = hostvars[host]["postgresql_role"]
        except (KeyError, TypeError):
            continue
        if value == role:
            found.append(str(host))
    return found


def role_of(name: str) -> str:
    """The role a variable belongs to: the longest role name that prefixes it (`haproxy_x` -> haproxy)."""
    roles = sorted((p.name for p in ROLES_DIR.iterdir() if (p / "defaults" / "main.yml").is_file()),
                   key=len, reverse=True)
    for role in roles:
        if name.startswith(role + "_"):
            return role
    raise ValueError(f"{name} is no role's variable (no roles/<role>/defaults/main.yml with its prefix)")


def role_default(name: str):
    """The default of role variable `name` from its role's defaults/main.yml (a plain value only)."""
    role = role_of(name)
    path = ROLES_DIR / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if name not in defaults:
        raise ValueError(f"{name} is not in {path.relative_to(ROLES_DIR.parent)}")
    value = defaults[name]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        raise ValueError(f"{name} has a templated default in {path.relative_to(ROLES_DIR.parent)}: "
                         "read it where the role is applied")
    return value


def role_var(host, hostvars, name: str):
    """Role variable `name` as `host` sees it: its inventory value, else the role's default."""
    try:
        return hostvars[host][name]
    except (KeyError, TypeError):
        return role_default(name)


_HAPROXY_UNITS = {"us": 0.000001, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def haproxy_seconds(value) -> float:
    """An HAProxy time ("35s", "1m", "500ms"; a bare number is milliseconds) in seconds."""
    text = str(value).strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number):] or "ms"
    if not number.isdigit() or unit not in _HAPROXY_UNITS:
        raise ValueError(f"{value!r} is not an HAProxy time (a number with us, ms, s, m, h or d)")
    return int(number) * _HAPROXY_UNITS[unit]


RECOVERY_TYPES = ("default", "time", "name", "immediate")


def pgbackrest_restore_options(recovery_type: str, target: str = "", repo=0) -> list[str]:
    """Options of `pgbackrest restore` for a recovery type (default: the end of the
    archived WAL; time: a timestamp; name: a restore point; immediate: the end of the
    backup), its target and the repository (0 or empty: pgBackRest picks the first
    that holds a backup for the target). A target other than the end of the WAL
    promotes when it is reached (a default recovery promotes at the end of the WAL)."""
    recovery_type = str(recovery_type)
    if recovery_type not in RECOVERY_TYPES:
        raise ValueError(f"the recovery type is one of {', '.join(RECOVERY_TYPES)}, not {recovery_type!r}")
    target = "" if target is None else str(target).strip()
    if recovery_type in ("time", "name") and not target:
        raise ValueError(f"a recovery of type {recovery_type} needs a target "
                         "(a timestamp with time zone, or a restore point's name)")
    repo_text = "" if repo is None else str(repo).strip()
    if repo_text and (not repo_text.isdigit() or int(repo_text) < 0):
        raise ValueError(f"the repository is a number (1, 2, ...; 0: pgBackRest picks), not {repo!r}")
    options = [f"--type={recovery_type}"]
    if recovery_type in ("time", "name"):
        options.append(f"--target={target}")
    if recovery_type != "default":
        options.append("--target-action=promote")
    if repo_text and int(repo_text) > 0:
        options.append(f"--repo={int(repo_text)}")
    return options


def release_batch(value) -> int | str:
    """The batch size of a rollout, as Ansible's ``serial`` takes it: a number of hosts
    (``2``, ``"2"`` -> 2) or a percentage of the app hosts (``"50%"``, 1 to 100). Anything
    else (0, a negative number, ``"0%"``, ``"150%"``, words) is a ValueError naming the
    value. Percentages round down as Ansible's do, to at least one host."""
    text = str(value).strip()
    if isinstance(value, bool) or not text:
        raise ValueError(f"the batch is a number of hosts (1, 2, ...) or a percentage of the app hosts "
                         f"(1% to 100%), not {value!r}")
    if text.endswith("%"):
        number = text[:-1].strip()
        if number.isdigit() and 1 <= int(number) <= 100:
            return f"{int(number)}%"
    elif text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"the batch is a number of hosts (1, 2, ...) or a percentage of the app hosts "
                     f"(1% to 100%), not {value!r}")


def release_batch_hosts(value, hosts: int) -> int:
    """How many of ``hosts`` app hosts one batch of ``value`` (see release_batch) holds:
    a percentage as Ansible's ``serial`` rounds it (down, at least one host), never more
    than the hosts there are."""
    hosts = int(hosts)
    batch = release_batch(value)
    if isinstance(batch, str):
        batch = max(1, hosts * int(batch[:-1]) // 100)
    return max(0, min(batch, hosts))


def _filter_error(func):
    def wrapper(*args, **kwargs):
        from ansible.errors import AnsibleFilterError

        try:
            return func(*args, **kwargs)
        except ValueError as e:
            raise AnsibleFilterError(str(e)) from e

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@_filter_error
def ssai_postgresql_version(facts) -> str:
    """`ansible_facts | ssai_postgresql_version`."""
    return postgresql_version(facts["distribution"], facts["distribution_major_version"])


@_filter_error
def ssai_postgresql_role_hosts(hosts, hostvars, role):
    """`groups['db'] | ssai_postgresql_role_hosts(hostvars, 'primary')`."""
    return postgresql_role_hosts(hosts, hostvars, role)


@_filter_error
def ssai_role_var(host, hostvars, name):
    """`inventory_hostname | ssai_role_var(hostvars, 'socialsphere_app_port')`."""
    return role_var(host, hostvars, name)


@_filter_error
def ssai_haproxy_seconds(value):
    """`haproxy_timeout_server | ssai_haproxy_seconds`."""
    return haproxy_seconds(value)


@_filter_error
def ssai_pgbackrest_restore_options(recovery_type, target="", repo=0):
    """`db_restore_type | ssai_pgbackrest_restore_options(db_restore_target, db_restore_repo)`."""
    return pgbackrest_restore_options(recovery_type, target, repo)


@_filter_error
def ssai_release_batch(value):
    """`app_batch | ssai_release_batch`."""
    return release_batch(value)


@_filter_error
def ssai_release_batch_hosts(value, hosts):
    """`app_batch | ssai_release_batch_hosts(groups['app'] | length)`."""
    return release_batch_hosts(value, hosts)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "ssai_postgresql_version": ssai_postgresql_version,
            "ssai_postgresql_role_hosts": ssai_postgresql_role_hosts,
            "ssai_role_var": ssai_role_var,
            "ssai_haproxy_seconds": ssai_haproxy_seconds,
            "ssai_pgbackrest_restore_options": ssai_pgbackrest_restore_options,
            "ssai_release_batch": ssai_release_batch,
            "ssai_release_batch_hosts": ssai_release_batch_hosts,
        }
