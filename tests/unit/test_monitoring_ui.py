"""Loki, Alloy and Grafana on the monitoring host (roles loki, alloy, grafana and
playbooks/monitoring-ui.yml), checked without containers:
- each role's templates, rendered by Ansible with the role's own defaults, are
  valid and say what the design says (Loki on loopback with compactor
  retention; Alloy reads the central journal and pushes to Loki; Grafana on the
  private address with both data sources provisioned; hardened units);
- every dashboard parses, has a unique uid and title, and every panel target
  has a query (PromQL is parsed by promtool when this machine has it);
- each role's defaults, argument spec and README table name the same variables;
- where no release archive can be had, the playbook skips the three roles with
  one message naming them and the reason, and changes nothing.
The dashboards' queries are evaluated against the lab's Prometheus by
tests/e2e/test_monitoring_dashboards.py."""
import configparser
import json
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_run import REPO, ansible_env, run_playbook

ROLES = ("loki", "alloy", "grafana")
DASHBOARDS = REPO / "roles/grafana/files/dashboards"
ADDRESS = "10.0.50.51"
SECRET = "not-a-real-password-4711"

TEMPLATES = {
    "loki": ["config.yml.j2", "loki.service.j2"],
    "alloy": ["config.alloy.j2", "alloy.service.j2"],
    "grafana": ["grafana.ini.j2", "grafana.service.j2", "datasources.yml.j2", "dashboards.yml.j2"],
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render every template of the three roles with their defaults and vars,
    through a real playbook run on localhost; {"<role>/<template>": text}."""
    out = tmp_path_factory.mktemp("rendered")
    vars_files = [str(REPO / f"roles/{role}/{kind}/main.yml") for role in ROLES for kind in ("defaults", "vars")]
    items = [{"src": str(REPO / f"roles/{role}/templates/{name}"), "dest": str(out / role / name.removesuffix(".j2"))}
             for role, names in TEMPLATES.items() for name in names]
    for role in ROLES:
        (out / role).mkdir()
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render the monitoring UI templates",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars_files": vars_files,
        "vars": {"ansible_host": ADDRESS, "grafana_admin_password": SECRET,
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "tasks": [{"name": "Render", "ansible.builtin.template": {"src": "{{ item.src }}", "dest": "{{ item.dest }}",
                                                                  "mode": "0600"},
                   "loop": items}],
    }], sort_keys=False))
    rc, output = run_playbook("localhost,", playbook, timeout=300)
    assert rc == 0, output
    return {f"{role}/{name.removesuffix('.j2')}": (out / role / name.removesuffix(".j2")).read_text()
            for role, names in TEMPLATES.items() for name in names}


# ---------------------------------------------------------------- Loki

def test_loki_config_single_binary_filesystem_with_retention(rendered):
    cfg = yaml.safe_load(rendered["loki/config.yml"])
    assert cfg["auth_enabled"] is False
    assert cfg["server"]["http_listen_address"] == "127.0.0.1"
    assert cfg["server"]["http_listen_port"] == 3100
    assert cfg["server"]["grpc_listen_address"] == "127.0.0.1"
    assert cfg["common"]["path_prefix"] == "/var/lib/loki"
    assert set(cfg["common"]["storage"]["filesystem"]) == {"chunks_directory", "rules_directory"}
    assert cfg["common"]["ring"]["kvstore"]["store"] == "inmemory"
    schema = cfg["schema_config"]["configs"][0]
    assert (schema["store"], schema["object_store"], schema["schema"]) == ("tsdb", "filesystem", "v13")
    assert cfg["limits_config"]["retention_period"] == "744h"
    assert cfg["compactor"]["retention_enabled"] is True
    assert cfg["compactor"]["delete_request_store"] == "filesystem"
    assert cfg["analytics"]["reporting_enabled"] is False


# ---------------------------------------------------------------- Alloy

def test_alloy_reads_the_central_journal_and_pushes_to_loki(rendered):
    cfg = rendered["alloy/config.alloy"]
    assert cfg.count("{") == cfg.count("}"), "unbalanced braces"
    journal = re.search(r'loki\.source\.journal "(\w+)" \{(.*?)\n\}', cfg, re.S)
    assert journal, cfg
    assert 'path          = "/var/log/journal/remote"' in journal.group(2)
    assert "relabel_rules = loki.relabel.journal.rules" in journal.group(2)
    assert "forward_to    = [loki.write.local.receiver]" in journal.group(2)
    write = re.search(r'loki\.write "local" \{(.*?)\n\}', cfg, re.S)
    assert write and 'url = "http://127.0.0.1:3100/loki/api/v1/push"' in write.group(1)
    rules = dict(re.findall(r'source_labels = \["(\w+)"\]\s+target_label\s+= "(\w+)"', cfg))
    assert rules["__journal__hostname"] == "host"
    assert rules["__journal__systemd_unit"] == "unit"
    assert rules["__journal_priority_keyword"] == "priority"


# ---------------------------------------------------------------- Grafana

def test_grafana_provisions_prometheus_and_loki(rendered):
    ds = yaml.safe_load(rendered["grafana/datasources.yml"])
    assert ds["apiVersion"] == 1
    by_name = {d["name"]: d for d in ds["datasources"]}
    assert set(by_name) == {"Prometheus", "Loki"}
    assert by_name["Prometheus"]["type"] == "prometheus"
    assert by_name["Prometheus"]["url"] == f"http://{ADDRESS}:9090"
    assert by_name["Prometheus"]["uid"] == "prometheus"
    assert by_name["Loki"]["type"] == "loki"
    assert by_name["Loki"]["url"] == "http://127.0.0.1:3100"
    assert by_name["Loki"]["uid"] == "loki"
    assert [d["name"] for d in ds["datasources"] if d.get("isDefault")] == ["Prometheus"]


def test_grafana_dashboard_provider_points_at_the_dashboards(rendered):
    prov = yaml.safe_load(rendered["grafana/dashboards.yml"])
    [provider] = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert provider["allowUiUpdates"] is False


def test_grafana_ini_private_address_and_password_from_file(rendered):
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string(rendered["grafana/grafana.ini"])
    assert ini["server"]["http_addr"] == ADDRESS
    assert ini["server"]["http_port"] == "3000"
    assert ini["security"]["admin_password"] == "$__file{/etc/grafana/admin_password}"
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["plugins"]["preinstall_disabled"] == "true"
    assert ini["paths"]["provisioning"] == "/etc/grafana/provisioning"
    assert SECRET not in rendered["grafana/grafana.ini"]


@pytest.mark.parametrize("unit,rw,listen", [
    ("loki/loki.service", "/var/lib/loki", "-config.file=/etc/loki/config.yml"),
    ("alloy/alloy.service", "/var/lib/alloy", "--server.http.listen-addr=127.0.0.1:12345"),
    ("grafana/grafana.service", "/var/lib/grafana", "--config=/etc/grafana/grafana.ini"),
])
def test_units_are_hardened(rendered, unit, rw, listen):
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.optionxform = str
    ini.read_string(rendered[unit])
    svc = ini["Service"]
    assert svc["User"] == svc["Group"] == unit.split("/")[0]
    assert listen in svc["ExecStart"]
    assert svc["NoNewPrivileges"] == "true"
    assert svc["ProtectSystem"] == "strict"
    assert svc["ReadWritePaths"] == rw
    assert svc["PrivateTmp"] == "true"
    assert svc["ProtectHome"] == "true"
    assert svc["CapabilityBoundingSet"] == ""
    assert ini["Install"]["WantedBy"] == "multi-user.target"


# ---------------------------------------------------------------- dashboards

def dashboards():
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_the_three_dashboards_exist():
    assert set(dashboards()) == {"service-overview.json", "postgresql.json", "hosts.json"}


def test_dashboards_have_unique_uids_and_titles():
    docs = dashboards().values()
    uids = [d["uid"] for d in docs]
    titles = [d["title"] for d in docs]
    assert all(uids) and all(titles)
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles
    assert all(len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize("name", ["service-overview.json", "postgresql.json", "hosts.json"])
def test_every_panel_target_has_a_query(name):
    doc = dashboards()[name]
    data_panels = [p for p in panels(doc) if p["type"] != "row"]
    assert data_panels
    ids = [p["id"] for p in panels(doc)]
    assert len(set(ids)) == len(ids), "panel ids repeat"
    for panel in data_panels:
        assert panel.get("targets"), f"{name}: panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"{name}: {panel['title']!r} {target.get('refId')} has no expr"
            assert target["datasource"]["uid"] in {"prometheus", "loki"}, (name, panel["title"])


def promql(expr):
    """A dashboard expression as Prometheus would get it from Grafana."""
    for var, value in {"$__rate_interval": "5m", "$instance": ".*", "$tier": ".*"}.items():
        expr = expr.replace(var, value)
    return expr


def test_dashboards_use_only_known_variables():
    for name, doc in dashboards().items():
        defined = {v["name"] for v in doc["templating"]["list"]}
        for panel in panels(doc):
            for target in panel.get("targets", []):
                used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
                assert used <= defined, (name, panel["title"], used - defined)
                assert "$" not in promql(target["expr"]) or target["datasource"]["type"] == "loki"


def test_dashboard_promql_parses(tmp_path):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed here (Debian: apt install prometheus); the e2e test still evaluates every query")
    rules = [{"record": f"check:q{i}", "expr": promql(t["expr"])}
             for doc in dashboards().values() for p in panels(doc) for i, t in enumerate(p.get("targets", []))
             if t["datasource"]["type"] == "prometheus"]
    for i, rule in enumerate(rules):
        rule["record"] = f"check:q{i}"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- role metadata

@pytest.mark.parametrize("role", ROLES)
def test_defaults_spec_and_readme_agree(role):
    defaults = yaml.safe_load((REPO / f"roles/{role}/defaults/main.yml").read_text())
    spec = yaml.safe_load((REPO / f"roles/{role}/meta/argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        assert options[name]["default"] == value, name
        assert all(k.startswith(f"{role}_") for k in defaults), name
    readme = (REPO / f"roles/{role}/README.md").read_text()
    table = set(re.findall(r"^\| `(\w+)` \|", readme, re.M))
    assert table == set(defaults), table ^ set(defaults)


@pytest.mark.parametrize("env", ["production", "staging", "lab"])
def test_admin_password_comes_from_the_vault(env):
    mapping = yaml.safe_load((REPO / f"inventories/{env}/group_vars/monitoring/vars.yml").read_text())
    assert mapping["grafana_admin_password"].startswith("{{ vault_grafana_admin_password")
    if env != "lab":
        example = (REPO / f"inventories/{env}/group_vars/all/vault.yml.example").read_text()
        assert re.search(r'^vault_grafana_admin_password: ""$', example, re.M)


# ---------------------------------------------------------------- the playbook's skip path

def test_playbook_skips_all_three_with_one_message_when_no_archive(tmp_path):
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "tests/unit/fixtures/inventory_ok", inventory)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    extra = {
        # This test is about monitoring-ui.yml; test_preflight.py covers preflight.
        "ssai_preflight_passed": True,
        "ansible_become": False,
        "loki_artifact_dir": str(artifacts),
        # Port 9 on loopback: refused at once, like an unreachable upstream.
        "loki_download_url": "http://127.0.0.1:9/loki-linux-amd64.zip",
        "alloy_download_url": "http://127.0.0.1:9/alloy-linux-amd64.zip",
        "grafana_download_url": "http://127.0.0.1:9/grafana.tar.gz",
    }
    rc, out = run_playbook(inventory / "hosts.yml", "monitoring-ui.yml", "-e", json.dumps(extra), timeout=300,
                           env=ansible_env(ANSIBLE_CACHE_PLUGIN="memory"))
    assert rc == 0, out
    flat = " ".join(out.split())
    assert flat.count("SKIPPED on mon1:") == 1, out
    assert "SKIPPED on mon1: Loki, Alloy, Grafana, because no release archive is available" in flat, out
    assert f"no {artifacts}/loki-linux-" in flat
    assert "http://127.0.0.1:9/grafana.tar.gz unreachable" in flat
    assert re.search(r"mon1\s*: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out), out
    # Nothing of the roles' install or configuration ran.
    assert "Download the archive" not in out and "Configure Grafana" not in out
