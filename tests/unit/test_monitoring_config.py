"""The monitoring tier's configuration, rendered from a real inventory by the
roles' own templates and defaults, passes the tools' own checks:
`promtool check config` (with the shipped rule files), `amtool check-config`
(with the notification templates) and the blackbox exporter's --config.check.
And what the files say matches the inventory: every host is a scrape target of
the jobs its groups imply, labelled with its inventory name and tier.

The roles' tasks install packages, so the test renders through a copy of each
role whose only task writes its templates into a directory (role defaults keep
their precedence below the inventory's group_vars, exactly as in a real run).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from ansible_run import REPO, ansible_env, run_playbook

ROLES = {
    "prometheus": {"prometheus.yml.j2": "prometheus.yml"},
    "alertmanager": {"alertmanager.yml.j2": "alertmanager.yml", "ssai.tmpl.j2": "ssai.tmpl"},
    "blackbox_exporter": {"blackbox.yml.j2": "blackbox.yml"},
}
# Vault values the production and staging group_vars refer to (dummies).
VAULT = {"vault_alertmanager_smtp_password": "not-a-secret", "vault_internal_ca_key_passphrase": "x"}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed: `apt-get install prometheus prometheus-alertmanager "
                    "prometheus-blackbox-exporter` (.ci/run installs them)")
    return path


@pytest.fixture(scope="module", params=["production", "staging"])
def rendered(request, tmp_path_factory):
    env = request.param
    tmp = tmp_path_factory.mktemp(f"monitoring-{env}")
    roles = tmp / "roles"
    for role, templates in ROLES.items():
        src = REPO / "roles" / role
        dst = roles / role
        for sub in ("defaults", "vars", "templates", "files"):
            if (src / sub).is_dir():
                shutil.copytree(src / sub, dst / sub)
        tasks = [{"name": f"Render {name}",
                  "ansible.builtin.template": {"src": tpl, "dest": f"{{{{ out_dir }}}}/{{{{ inventory_hostname }}}}/{name}",
                                               "mode": "0644"},
                  "delegate_to": "localhost"}
                 for tpl, name in templates.items()]
        (dst / "tasks").mkdir(parents=True)
        (dst / "tasks/main.yml").write_text(yaml.safe_dump(tasks, sort_keys=False))
    playbook = tmp / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render the monitoring configuration", "hosts": "monitoring", "gather_facts": False,
        "pre_tasks": [{"name": "Create the output directory", "ansible.builtin.file": {
            "path": "{{ out_dir }}/{{ inventory_hostname }}", "state": "directory", "mode": "0755"},
            "delegate_to": "localhost"}],
        "roles": list(ROLES)}], sort_keys=False))
    out = tmp / "out"
    vault = tmp / "vault.yml"
    vault.write_text(yaml.safe_dump(VAULT))
    rc, log = run_playbook(REPO / "inventories" / env / "hosts.yml", str(playbook), "-e", f"out_dir={out}",
                           "-e", f"@{vault}", timeout=300, env=ansible_env(ANSIBLE_ROLES_PATH=str(roles)))
    assert rc == 0, log
    inventory = yaml.safe_load((REPO / "inventories" / env / "hosts.yml").read_text())
    return env, out / "mon1", inventory


def groups_of(inventory: dict) -> dict[str, dict[str, dict]]:
    return {g: d.get("hosts", {}) for g, d in inventory["all"]["children"].items()}


def test_prometheus_config_passes_promtool(rendered, tmp_path):
    _, out, _ = rendered
    cfg = yaml.safe_load((out / "prometheus.yml").read_text())
    # Check it with the rule files this repository ships, not the host's.
    cfg["rule_files"] = [str(REPO / "roles/prometheus/files/rules/*.rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([need("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_scrape_targets_follow_the_inventory(rendered):
    _, out, inventory = rendered
    cfg = yaml.safe_load((out / "prometheus.yml").read_text())
    groups = groups_of(inventory)
    every = {h: v for hosts in groups.values() for h, v in hosts.items()}
    expected = {
        "node": (set(every), 9100), "postgres": (set(groups["db"]), 9187),
        "haproxy": (set(groups["edge"]), 8405), "nginx": (set(groups["edge"]), 9113),
        "app": (set(groups["app"]), 8000), "prometheus": (set(groups["monitoring"]), 9090),
        "alertmanager": (set(groups["monitoring"]), 9093),
    }
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    for job, (hosts, port) in expected.items():
        statics = jobs[job]["static_configs"]
        got = {s["labels"]["instance"]: s for s in statics}
        assert set(got) == hosts, job
        for host, s in got.items():
            assert s["targets"] == [f"{every[host]['ansible_host']}:{port}"], (job, host)
            tier = next(g for g in ("edge", "app", "db", "backup", "monitoring") if host in groups[g])
            assert s["labels"]["tier"] == tier, (job, host)
    probes = jobs["blackbox"]["static_configs"]
    assert {p["labels"]["probe"] for p in probes} == {"public", "edge"}
    assert {p["labels"]["instance"] for p in probes if p["labels"]["probe"] == "edge"} == set(groups["edge"])
    public = [p for p in probes if p["labels"]["probe"] == "public"]
    assert public[0]["targets"] == ["https://social.example.com/readyz"]
    alertmanagers = cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == [f"{every[h]['ansible_host']}:9093" for h in sorted(groups["monitoring"])]


def test_alertmanager_config_passes_amtool(rendered, tmp_path):
    _, out, _ = rendered
    cfg = yaml.safe_load((out / "alertmanager.yml").read_text())
    cfg["templates"] = [str(out / "ssai.tmpl")]
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([need("amtool"), "check-config", str(tmp_path / "alertmanager.yml")],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_alertmanager_routes_and_secrets(rendered):
    _, out, _ = rendered
    text = (out / "alertmanager.yml").read_text()
    cfg = yaml.safe_load(text)
    routes = {tuple(r["matchers"]): r["receiver"] for r in cfg["route"]["routes"]}
    assert routes == {('severity="page"',): "page", ('severity="ticket"',): "ticket"}
    assert cfg["route"]["group_by"] == ["alertname", "tier"]
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert receivers["page"]["email_configs"] and receivers["ticket"]["email_configs"]
    assert cfg["global"]["smtp_auth_password"] == VAULT["vault_alertmanager_smtp_password"]
    assert cfg["global"]["smtp_require_tls"] is True
    sources = {tuple(i["source_matchers"]) for i in cfg["inhibit_rules"]}
    assert ('alertname="HostDown"',) in sources and ('alertname="HAProxyNoHealthyBackend"',) in sources


def test_blackbox_config_is_valid(rendered):
    _, out, _ = rendered
    cfg = yaml.safe_load((out / "blackbox.yml").read_text())
    http = cfg["modules"]["https_public"]["http"]
    assert http["fail_if_not_ssl"] is True
    assert http["tls_config"]["server_name"] == "social.example.com"
    assert http["tls_config"]["insecure_skip_verify"] is False
    tool = shutil.which("prometheus-blackbox-exporter")
    if tool is None:
        pytest.fail("prometheus-blackbox-exporter is not installed (.ci/run installs it)")
    res = subprocess.run([tool, "--config.check", f"--config.file={out / 'blackbox.yml'}"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
