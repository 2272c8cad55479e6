"""Facts the deployment repeats nowhere: each has one source, and that source is right.

plugins/filter/ssai_facts.py holds the PostgreSQL version map, the reading of
postgresql_role and the lookup of another tier's role variable; the keepalived role
exposes its check script's path; the socialsphere_app role owns Gunicorn's port and
configuration. These tests fail when a copy comes back or the source gives a wrong answer.
"""
import ast
import pathlib
import re

import pytest
import yaml

import ssai_facts

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((REPO / "playbooks").rglob("*.yml"))


def _files(*patterns):
    out = []
    for pattern in patterns:
        out += [p for p in REPO.glob(pattern) if ".venv" not in p.parts and p.is_file()]
    return sorted(set(out))


# Everything Ansible, Fabric and the tests run (documentation may name the facts).
CODE = _files("playbooks/**/*.yml", "roles/**/*.yml", "roles/**/*.j2", "fabfile.py", "tests/**/*.py",
              "molecule/**/*.py", "molecule/**/*.yml", "lab/**/*.py", "inventories/**/*.yml")
CODE = [p for p in CODE if p != pathlib.Path(__file__).resolve()]  # this file quotes the patterns


def _defaults(role):
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())


# ---------------------------------------------------------------- PostgreSQL version


def test_every_supported_os_has_a_postgresql_version():
    supported = yaml.safe_load((REPO / "playbooks/vars/preflight.yml").read_text())["preflight_supported_os"]
    for os_ in supported:
        major = os_["version"].split(".")[0]
        assert ssai_facts.postgresql_version(os_["distribution"], major) in {"15", "16"}
    assert len(ssai_facts.POSTGRESQL_VERSIONS) == len(supported)


def test_postgresql_version_of_each_release_and_of_an_unknown_one():
    assert ssai_facts.postgresql_version("Ubuntu", "24") == "16"
    assert ssai_facts.postgresql_version("Debian", 12) == "15"
    with pytest.raises(ValueError, match="Debian 11"):
        ssai_facts.postgresql_version("Debian", "11")


def test_postgresql_version_of_os_release():
    ubuntu = 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n'
    debian = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
    assert ssai_facts.postgresql_version_of_os_release(ubuntu) == "16"
    assert ssai_facts.postgresql_version_of_os_release(debian) == "15"


# A distribution release mapped to a PostgreSQL major version ("Debian-12": "15",
# {'Ubuntu-24': '16'}), or a Python guess ("16" if ... else "15").
VERSION_MAP = re.compile(r"""(?:Ubuntu|Debian)[-_ ]?\d+['"]?\s*:\s*['"]?1\d\b|['"]1\d['"]\s+if\b""")


def test_no_copy_of_the_postgresql_version_map():
    copies = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in CODE for m in VERSION_MAP.finditer(p.read_text())]
    assert copies == [], "use ssai_postgresql_version (plugins/filter/ssai_facts.py) instead"


# ---------------------------------------------------------------- the primary


def test_postgresql_role_hosts_in_inventory_order():
    hostvars = {"db1": {"postgresql_role": "replica"}, "db2": {"postgresql_role": "primary"}, "db3": {},
                "db4": {"postgresql_role": "replica"}}
    hosts = ["db1", "db2", "db3", "db4"]
    assert ssai_facts.postgresql_role_hosts(hosts, hostvars, "primary") == ["db2"]
    assert ssai_facts.postgresql_role_hosts(hosts, hostvars, "replica") == ["db1", "db4"]
    assert ssai_facts.postgresql_role_hosts([], hostvars, "primary") == []
    with pytest.raises(ValueError):
        ssai_facts.postgresql_role_hosts(hosts, hostvars, "standby")


def test_no_second_reading_of_postgresql_role():
    copies = [str(p.relative_to(REPO)) for p in CODE if p.suffix in (".yml", ".j2")
              and re.search(r"selectattr\(\s*'postgresql_role'", p.read_text())]
    assert copies == [], "use ssai_postgresql_role_hosts (plugins/filter/ssai_facts.py)"


# ---------------------------------------------------------------- keepalived's check script


def test_keepalived_check_path_lives_in_the_role_only():
    path = "/usr/local/libexec/keepalived/check-edge"
    holders = [str(p.relative_to(REPO)) for p in CODE if path in p.read_text()]
    assert holders == ["roles/keepalived/vars/main.yml"]
    facts = yaml.safe_load((REPO / "roles/keepalived/tasks/facts.yml").read_text())
    assert facts[0]["ansible.builtin.set_fact"] == {"keepalived_check_script": "{{ __keepalived_check_script }}"}


# ---------------------------------------------------------------- Gunicorn's port


def test_role_var_prefers_the_inventory_then_the_role_default():
    hostvars = {"app1": {"socialsphere_app_port": 9000}, "app2": {}}
    assert ssai_facts.role_var("app1", hostvars, "socialsphere_app_port") == 9000
    assert ssai_facts.role_var("app2", hostvars, "socialsphere_app_port") == _defaults("socialsphere_app")[
        "socialsphere_app_port"]
    # The longest role name wins: postgres_exporter_*, not postgresql_*.
    assert ssai_facts.role_of("postgres_exporter_port") == "postgres_exporter"
    assert ssai_facts.role_of("haproxy_timeout_server") == "haproxy"
    with pytest.raises(ValueError, match="templated"):
        ssai_facts.role_default("socialsphere_app_workers")
    with pytest.raises(ValueError, match="no role"):
        ssai_facts.role_default("nosuchrole_port")


def test_no_literal_app_port_in_playbooks_or_fabfile():
    port = str(_defaults("socialsphere_app")["socialsphere_app_port"])
    files = [*PLAYBOOKS, REPO / "fabfile.py", REPO / "roles/haproxy/templates/haproxy.cfg.j2",
             REPO / "roles/haproxy/tasks/assert.yml"]
    holders = [str(p.relative_to(REPO)) for p in files if re.search(rf"\b{port}\b", p.read_text())]
    assert holders == [], "read socialsphere_app_port (ssai_role_var) instead of the number"


def test_port_tables_of_other_roles_agree_with_the_app_role():
    """The firewall and Prometheus roles list every service's port in their defaults;
    their Gunicorn entries must be the app role's port."""
    port = _defaults("socialsphere_app")["socialsphere_app_port"]
    rules = [r for r in _defaults("firewall")["firewall_tier_rules"] if r["name"] == "Gunicorn"]
    jobs = [j for j in _defaults("prometheus")["prometheus_scrape_jobs"] if j["job"] == "app"]
    assert [r["port"] for r in rules] == [port]
    assert [j["port"] for j in jobs] == [port]


# ---------------------------------------------------------------- Gunicorn's configuration


def _app_gunicorn_defaults():
    """The defaults of app/socialsphere/gunicorn_conf.py (the GUNICORN_* fallbacks)."""
    tree = ast.parse((REPO / "app/socialsphere/gunicorn_conf.py").read_text())
    found = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        for call in ast.walk(node.value):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "get"
                    and isinstance(call.args[1], ast.Constant)):
                found[node.targets[0].id] = call.args[1].value
    return found


def test_app_gunicorn_config_has_the_role_defaults():
    role = _defaults("socialsphere_app")
    app = _app_gunicorn_defaults()
    assert app["worker_class"] == role["socialsphere_app_worker_class"]
    for name in ("threads", "max_requests", "max_requests_jitter", "timeout", "graceful_timeout", "keepalive",
                 "backlog"):
        assert int(app[name]) == role[f"socialsphere_app_{name}"], name
    assert app["bind"].endswith(f":{role['socialsphere_app_port']}")
    # workers: 2 x cores + 1, at least 2, in both.
    assert "* 2 + 1" in role["socialsphere_app_workers"]
    assert "cpu_count() * 2 + 1" in (REPO / "app/socialsphere/gunicorn_conf.py").read_text()


def test_gunicorn_timeout_is_shorter_than_haproxys():
    gunicorn = ssai_facts.role_default("socialsphere_app_timeout")
    haproxy = ssai_facts.haproxy_seconds(ssai_facts.role_default("haproxy_timeout_server"))
    assert haproxy > gunicorn


def test_haproxy_seconds():
    assert ssai_facts.haproxy_seconds("35s") == 35
    assert ssai_facts.haproxy_seconds("1m") == 60
    assert ssai_facts.haproxy_seconds("500ms") == 0.5
    assert ssai_facts.haproxy_seconds("30000") == 30
    with pytest.raises(ValueError):
        ssai_facts.haproxy_seconds("35 sec")


# ---------------------------------------------------------------- pgBackRest restore options
@pytest.mark.parametrize(("args", "expected"), [
    (("default",), ["--type=default"]),
    (("default", "", 2), ["--type=default", "--repo=2"]),
    (("immediate", "", "0"), ["--type=immediate", "--target-action=promote"]),
    (("time", "2026-11-25 00:40:00+00", ""),
     ["--type=time", "--target=2026-11-25 00:40:00+00", "--target-action=promote"]),
    (("name", "before_42", 1), ["--type=name", "--target=before_42", "--target-action=promote", "--repo=1"]),
])
def test_pgbackrest_restore_options(args, expected):
    assert ssai_facts.pgbackrest_restore_options(*args) == expected


@pytest.mark.parametrize("args", [("latest",), ("time", ""), ("name", None), ("default", "", "two"),
                                  ("default", "", -1)])
def test_pgbackrest_restore_options_refuse_what_pgbackrest_would_misread(args):
    with pytest.raises(ValueError):
        ssai_facts.pgbackrest_restore_options(*args)


def test_the_restore_options_have_one_source():
    """db-restore.yml and the postgresql role build pgBackRest's recovery options only
    through the filter (a copy of the type/target logic in YAML would drift)."""
    copies = [p for p in CODE if re.search(r"--target-action=promote", p.read_text(encoding="utf-8"))]
    assert not copies, copies


# ---------------------------------------------------------------- release batch size


@pytest.mark.parametrize(("value", "expected"), [(1, 1), ("2", 2), (" 3 ", 3), ("50%", "50%"), ("100%", "100%"),
                                                 ("1%", "1%"), ("07", 7)])
def test_release_batch_takes_a_number_or_a_percentage(value, expected):
    assert ssai_facts.release_batch(value) == expected


@pytest.mark.parametrize(("value", "hosts", "expected"), [(1, 2, 1), (2, 2, 2), (5, 2, 2), ("50%", 2, 1), ("50%", 3, 1),
                                                          ("100%", 3, 3), ("1%", 4, 1), ("75%", 4, 3), (1, 1, 1)])
def test_release_batch_hosts_counts_a_batch_as_serial_does(value, hosts, expected):
    assert ssai_facts.release_batch_hosts(value, hosts) == expected


@pytest.mark.parametrize("value", [0, "0", "-1", "0%", "101%", "150%", "2.5", "two", "", "%", None, True])
def test_release_batch_refuses_anything_else_naming_it(value):
    with pytest.raises(ValueError, match=r"the batch is a number of hosts \(1, 2, \.\.\.\) or a percentage"):
        ssai_facts.release_batch(value)
