"""fabfile.py's own logic, without hosts: the arguments of `fab deploy` / `fab rollback`
(batch size, version), the ansible-playbook command they run (playbooks/app.yml, the
playbook site.yml runs), the choice of the rollback's release, and the `fab releases`
report. The playbooks behind them: test_release_tasks.py here, the e2e drills in the lab."""
import importlib.util
import json
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fab():
    pytest.importorskip("fabric")
    spec = importlib.util.spec_from_file_location("ssai_fabfile", REPO / "fabfile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(("arg", "expected"), [("1", 1), ("2", 2), ("50%", "50%"), ("100%", "100%")])
def test_batch_takes_a_number_or_a_percentage(fab, arg, expected):
    assert fab.parse_batch(arg) == expected


@pytest.mark.parametrize("arg", ["0", "0%", "150%", "half", "-2", ""])
def test_a_bad_batch_stops_before_ansible(fab, arg):
    with pytest.raises(SystemExit, match=r"--batch: the batch is a number of hosts"):
        fab.parse_batch(arg)


def test_fabric_and_app_yml_check_the_batch_with_one_function():
    assert "_FACTS.release_batch(" in (REPO / "fabfile.py").read_text()
    assert "app_batch | default(1) | ssai_release_batch" in (REPO / "playbooks" / "app.yml").read_text()


def test_the_version_is_the_given_one_else_the_checkouts(fab):
    assert fab.deploy_version("1.2.3+gabc", checkout=lambda: pytest.fail("not asked")) == "1.2.3+gabc"
    assert fab.deploy_version(None, checkout=lambda: "9.9.9+gdef") == "9.9.9+gdef"
    assert fab.deploy_version("  ", checkout=lambda: "9.9.9+gdef") == "9.9.9+gdef"


def test_the_command_line_is_recorded_as_typed(fab):
    assert fab.fab_command(["/x/.venv/bin/fab", "deploy", "--version", "1.0+g1", "--batch", "50%"]) == \
        "fab deploy --version 1.0+g1 --batch 50%"
    assert fab.fab_command(["fab", "deploy", "--version", "a b"]) == "fab deploy --version 'a b'"


def test_deploy_and_rollback_run_app_yml_with_one_json_argument(fab, monkeypatch):
    monkeypatch.setattr(fab, "PLAYBOOK_ARGS", ["-e", "socialsphere_app_readyz_retries=10"])
    monkeypatch.setattr(fab, "VAULT_PASSWORD_FILE", "")
    cmd = fab.playbook_command("app.yml", fab.release_extra_vars("1.0+g1", 2, "deploy", "fab deploy --batch 2"))
    assert cmd[1:4] == ["-i", fab.INVENTORY, "playbooks/app.yml"]
    assert cmd[4] == "-e"
    assert json.loads(cmd[5]) == {"socialsphere_release": "1.0+g1", "app_batch": "2", "app_deploy_kind": "deploy",
                                  "app_deploy_command": "fab deploy --batch 2"}
    assert cmd[6:] == ["-e", "socialsphere_app_readyz_retries=10"]
    back = fab.release_extra_vars("0.9+g0", "50%", "rollback", "fab rollback")
    assert back["app_rollback"] is True and back["socialsphere_app_migrate"] is False
    assert back["app_batch"] == "50%" and back["socialsphere_release"] == "0.9+g0"


class Called(Exception):
    pass


def test_deploy_refuses_a_missing_artifact_and_passes_the_batch(fab, monkeypatch, tmp_path):
    monkeypatch.setattr(fab, "REPO", tmp_path)
    calls = []

    def fake_run(playbook, extra, what):
        calls.append((playbook, extra, what))

    monkeypatch.setattr(fab, "run_playbook", fake_run)
    monkeypatch.setattr(sys, "argv", ["fab", "deploy", "--version", "1.0+g1", "--batch", "2"])
    with pytest.raises(SystemExit, match="socialsphere-1.0\\+g1.tar.gz missing: run `fab build` first"):
        fab.deploy.body(None, version="1.0+g1", batch="2")
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "socialsphere-1.0+g1.tar.gz").write_bytes(b"")
    with pytest.raises(SystemExit, match="--batch"):
        fab.deploy.body(None, version="1.0+g1", batch="none")
    fab.deploy.body(None, version="1.0+g1", batch="2")
    ((playbook, extra, what),) = calls
    assert (playbook, what) == ("app.yml", "deploy 1.0+g1")
    assert extra == {"socialsphere_release": "1.0+g1", "app_batch": "2", "app_deploy_kind": "deploy",
                     "app_deploy_command": "fab deploy --version 1.0+g1 --batch 2"}


def test_prune_and_unlock_run_their_playbooks(fab, monkeypatch):
    calls = []
    monkeypatch.setattr(fab, "run_playbook", lambda playbook, extra, what: calls.append((playbook, extra)))
    monkeypatch.setattr(sys, "argv", ["fab", "prune", "--keep", "2"])
    fab.prune.body(None, keep="2")
    fab.prune.body(None)
    fab.unlock.body(None)
    assert calls == [("app-prune.yml", {"app_deploy_command": "fab prune --keep 2", "socialsphere_app_keep_releases": 2}),
                     ("app-prune.yml", {"app_deploy_command": "fab prune --keep 2"}),
                     ("app-unlock.yml", {"app_deploy_command": "fab prune --keep 2"})]
    with pytest.raises(SystemExit, match="--keep: a number of releases"):
        fab.prune.body(None, keep="some")


# ---------------------------------------------------------------- the rollback's release
def state(current, previous, *releases):
    return {"current": current, "previous": previous, "releases": list(releases)}


def test_rollback_goes_back_to_previous_on_every_host(fab):
    states = {"app1": state("2.0", "1.0", "2.0", "1.5", "1.0"), "app2": state("2.0", "1.0", "2.0", "1.0")}
    assert fab.rollback_target(states) == "1.0"


def test_rollback_without_previous_takes_the_newest_other_release(fab):
    assert fab.rollback_target({"app1": state("2.0", "", "2.0", "1.5", "1.0")}) == "1.5"


def test_rollback_refuses_hosts_that_disagree(fab):
    states = {"app1": state("2.0", "1.0", "2.0", "1.0"), "app2": state("1.0", "2.0", "2.0", "1.0")}
    with pytest.raises(SystemExit, match=r"different releases \(app1: 1.0, app2: 2.0\).*--version"):
        fab.rollback_target(states)


def test_rollback_refuses_when_there_is_nothing_to_go_back_to(fab):
    with pytest.raises(SystemExit, match="app1: no release to roll back to .current: 2.0; installed: 2.0."):
        fab.rollback_target({"app1": state("2.0", "", "2.0")})


def test_rollback_refuses_a_previous_release_pruned_somewhere(fab):
    states = {"app1": state("2.0", "1.0", "2.0", "1.0"), "app2": state("2.0", "1.0", "2.0")}
    with pytest.raises(SystemExit, match="1.0 is not installed on app2"):
        fab.rollback_target(states)


# ---------------------------------------------------------------- fab releases, fab status
def test_the_paths_come_from_the_role(fab):
    host = fab.Host("app1", "10.0.0.1", {})
    assert (host.root, host.lock, host.log) == ("/srv/socialsphere", "/srv/socialsphere/.deploy-lock",
                                                "/var/log/socialsphere/deploys.log")
    assert fab.Host("app1", "x", {"socialsphere_app_deploy_lock": "/l"}).lock == "/l"


def test_releases_marks_current_and_previous_and_shows_the_log(fab):
    st = {"releases": ["2.0", "1.0", "0.9"], "incomplete": ["2.1"], "current": "2.0", "previous": "1.0",
          "installed": {"2.0": 1767225600.0}, "lock": None,
          "log": [{"time": "2026-01-01T00:00:00Z", "who": "a@ops", "kind": "deploy", "from": "1.0", "to": "2.0",
                   "result": "ok", "command": "fab deploy --version 2.0"},
                  {"time": "2026-01-02T00:00:00Z", "who": "b@ops", "kind": "unlock", "result": "lock-broken",
                   "holder": {"who": "a@ops", "since": "2026-01-01T00:00:00Z"}, "command": "fab unlock"},
                  {"time": "2026-01-03T00:00:00Z", "who": "b@ops", "kind": "prune", "result": "ok",
                   "removed": ["0.8"], "command": "fab prune"},
                  {"raw": "not json"}]}
    lines = fab.format_releases("app1", st)
    assert lines[0] == "app1: deploy lock free"
    assert lines[1].startswith("  * 2.0 ") and lines[1].endswith("2026-01-01 00:00Z  (current)")
    assert lines[2].startswith("  < 1.0 ") and lines[2].endswith("(previous)")
    assert lines[3].startswith("    0.9 ")
    assert lines[4].endswith("(incomplete)")
    assert lines[5] == "  deploy log:"
    assert lines[6] == "    2026-01-01T00:00:00Z a@ops deploy: 1.0 -> 2.0 ok; fab deploy --version 2.0"
    assert lines[7] == ("    2026-01-02T00:00:00Z b@ops unlock: lock of a@ops (since 2026-01-01T00:00:00Z) broken; "
                        "fab unlock")
    assert lines[8] == "    2026-01-03T00:00:00Z b@ops prune: pruned 0.8; fab prune"
    assert lines[9] == "    not json"


def test_the_lock_is_described_with_who_and_since(fab):
    assert fab.describe_lock(None) == "free"
    assert fab.describe_lock({"who": "a@ops", "since": "2026-01-01T00:00:00Z", "command": "fab deploy", "id": "r1"}) \
        == "held by a@ops since 2026-01-01T00:00:00Z (fab deploy; run r1)"


def test_no_rollout_code_is_left_in_fabric(fab):
    """One activation path: Fabric drains, switches and reloads nothing itself."""
    text = (REPO / "fabfile.py").read_text()
    for gone in ("wait-drained", "systemctl reload", "mv -Tf", "app_activate", "'drain'", "reset-failed"):
        assert gone not in text, gone


# ---------------------------------------------------------------- contract releases, the maintenance page
def test_contract_deploys_and_rollbacks_pass_the_flag_to_app_yml(fab, monkeypatch, tmp_path):
    monkeypatch.setattr(fab, "REPO", tmp_path)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "socialsphere-2.0+g2.tar.gz").write_bytes(b"")
    calls = []
    monkeypatch.setattr(fab, "run_playbook", lambda playbook, extra, what: calls.append((playbook, extra, what)))
    monkeypatch.setattr(sys, "argv", ["fab", "deploy", "--version", "2.0+g2", "--contract"])
    fab.deploy.body(None, version="2.0+g2", contract=True)
    fab.deploy.body(None, version="2.0+g2")
    monkeypatch.setattr(sys, "argv", ["fab", "rollback", "--version", "1.0+g1", "--contract"])
    fab.rollback.body(None, version="1.0+g1", contract=True)
    (contract, _), (plain, _), (back, what) = [(extra, what) for _, extra, what in calls]
    assert contract == {"socialsphere_release": "2.0+g2", "app_batch": "1", "app_deploy_kind": "deploy",
                        "app_deploy_command": "fab deploy --version 2.0+g2 --contract", "app_release_contract": True}
    assert "app_release_contract" not in plain
    assert back["app_release_contract"] is True and back["app_rollback"] is True
    assert back["socialsphere_app_migrate"] is False and back["app_deploy_command"].endswith("--contract")
    assert what == "rollback to 1.0+g1"


def test_fab_parses_contract_as_a_flag_and_maintenance_state_as_positional(fab):
    from invoke import Collection, Parser
    from invoke.parser import ParserContext

    tasks = Collection.from_module(fab)
    deploy_args = tasks["deploy"].get_arguments()
    assert next(a for a in deploy_args if a.name == "contract").kind is bool
    contexts = [ParserContext(name=n, args=tasks[n].get_arguments()) for n in ("maintenance", "rollback")]
    parsed = Parser(contexts=contexts).parse_argv(["maintenance", "off"])
    assert parsed[0].as_kwargs == {"state": "off"}
    parsed = Parser(contexts=contexts).parse_argv(["rollback", "--contract"])
    assert parsed[0].as_kwargs["contract"] is True


@pytest.mark.parametrize(("arg", "expected"), [("on", "on"), ("off", "off"), (" ON ", "on")])
def test_maintenance_takes_on_or_off(fab, arg, expected):
    assert fab.maintenance_state(arg) == expected


@pytest.mark.parametrize("arg", ["", "yes", "true", "1", None])
def test_a_bad_maintenance_state_stops_before_ansible(fab, arg, monkeypatch):
    monkeypatch.setattr(fab, "run_playbook", lambda *a: pytest.fail("ran a playbook"))
    with pytest.raises(SystemExit, match=r"fab maintenance on\|off, not"):
        fab.maintenance.body(None, state=arg)


def test_maintenance_runs_the_playbook(fab, monkeypatch):
    calls = []
    monkeypatch.setattr(fab, "run_playbook", lambda playbook, extra, what: calls.append((playbook, extra, what)))
    fab.maintenance.body(None, state="on")
    fab.maintenance.body(None, state="off")
    assert calls == [("maintenance.yml", {"maintenance": "on"}, "maintenance page on"),
                     ("maintenance.yml", {"maintenance": "off"}, "maintenance page off")]


def test_status_says_whether_the_maintenance_page_is_on(fab):
    assert fab.describe_maintenance({"edge1": False, "edge2": False}) == "maintenance page: off"
    assert fab.describe_maintenance({"edge1": True, "edge2": True}).startswith(
        "maintenance page: ON on every edge host (503 for every request but /readyz): fab maintenance off")
    assert fab.describe_maintenance({"edge1": True, "edge2": False}) == (
        "maintenance page: on on edge1 only (the edge hosts disagree): fab maintenance on or fab maintenance off")
    assert fab.describe_maintenance({"edge1": None, "edge2": True}) == \
        "maintenance page: unknown on edge1; on on edge2"


def test_the_flag_path_is_the_nginx_roles(fab):
    host = fab.Host("edge1", "10.0.0.1", {})
    assert host.role_var("nginx_maintenance_flag") == "/var/lib/nginx-maintenance/on"
    assert fab.Host("edge1", "10.0.0.1", {"nginx_maintenance_flag": "/x/on"}).role_var("nginx_maintenance_flag") == "/x/on"


def test_an_isolated_host_is_never_among_the_hosts_fabric_contacts(fab):
    """A compromised host (group isolated, playbooks/isolate-host.yml) is left out."""
    inv = {"app": {"hosts": ["app1", "app2"]}, "isolated": {"hosts": ["app2"]},
           "_meta": {"hostvars": {"app1": {"ansible_host": "192.0.2.21"}, "app2": {"ansible_host": "192.0.2.22"}}}}
    assert [h.name for h in fab.hosts_of(inv, "app")] == ["app1"]
    del inv["isolated"]
    assert [h.name for h in fab.hosts_of(inv, "app")] == ["app1", "app2"]
