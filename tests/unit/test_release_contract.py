"""The expand/contract rule, enforced (issue 13 item 2):

- plugins/filter/ssai_release.py: the contract migrations a deploy applies or a rollback
  goes back across, from the release manifests' revision graphs and the database's heads;
- scripts/build-release's reading of `contract = True` in the migration files (the graph
  it records in the manifest);
- playbooks/tasks/release-contract.yml run for real on this machine (local connection,
  each app host of the fixture inventory a directory with its releases, manifests and
  links; the database's revision from a stand-in /readyz on 127.0.0.1): refused without
  -e app_release_contract=true, naming the revisions and the flag, accepted with it;
- playbooks/app.yml itself refuses before the deploy lock (nothing written on any host).
"""
import http.server
import importlib.machinery
import importlib.util
import io
import json
import shutil
import tarfile
import threading

import pytest
import yaml

from ansible_run import REPO, local_env, run_playbook

FIXTURE = REPO / "tests" / "unit" / "fixtures" / "inventory_ok"
APPS = ("app1", "app2")


def load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


release = load("ssai_release", REPO / "plugins" / "filter" / "ssai_release.py")
build = load("build_release", REPO / "scripts" / "build-release")

# 0001 <- 0002 <- 0003 <- 0004 <- 0005 (contract) <- 0006
GRAPH = {
    "0001": {"down": [], "contract": False},
    "0002": {"down": ["0001"], "contract": False},
    "0003": {"down": ["0002"], "contract": False},
    "0004": {"down": ["0003"], "contract": False},
    "0005": {"down": ["0004"], "contract": True},
    "0006": {"down": ["0005"], "contract": False},
}


def manifest(version, head, graph=GRAPH):
    """A release manifest as scripts/build-release writes it (the fields the check reads)."""
    revisions = release.lineage(graph, [head])
    sub = {r: info for r, info in graph.items() if r in revisions}
    return {"name": "socialsphere", "version": version, "alembic_head": head, "migrations": sub,
            "contract_revisions": sorted(r for r, i in sub.items() if i["contract"]), "files": {}}


# ---------------------------------------------------------------- the revision walk
def test_a_deploy_that_applies_a_contract_migration_crosses_it():
    result = release.release_contract(manifest("2", "0005"), [manifest("1", "0004")], ["0004"])
    assert (result["applied"], result["undone"], result["contract"], result["unknown"]) == (["0005"], [], ["0005"], "")
    assert release.describe(result) == ("it applies the contract migration(s) 0005, which the release the app hosts "
                                        "run may not work with")


def test_every_migration_between_the_database_and_the_head_counts():
    result = release.release_contract(manifest("3", "0006"), [], ["0003"])
    assert result["applied"] == ["0004", "0005", "0006"]
    assert result["contract"] == ["0005"]


def test_expand_migrations_only_cross_nothing():
    result = release.release_contract(manifest("2", "0004"), [], ["0002"])
    assert (result["applied"], result["contract"], result["unknown"]) == (["0003", "0004"], [], "")


def test_migrations_already_applied_are_not_crossed_again():
    assert release.release_contract(manifest("2", "0006"), [], ["0006"])["contract"] == []
    assert release.release_contract(manifest("2", "0006"), [], ["0005"])["applied"] == ["0006"]
    assert release.release_contract(manifest("2", "0006"), [], ["0005"])["contract"] == []


def test_a_rollback_across_a_contract_migration_crosses_it_too():
    # The database stays at 0005 (a rollback does not migrate); the release predates it.
    # The old release's own manifest has no graph (built before it was recorded): the
    # running release's manifest knows the revisions.
    old = manifest("1", "0004")
    del old["migrations"]
    result = release.release_contract(old, [manifest("2", "0005")], ["0005"])
    assert (result["applied"], result["undone"], result["contract"]) == ([], ["0005"], ["0005"])
    assert "the database has the contract migration(s) 0005, which the release (0004) predates" in \
        release.describe(result)


def test_a_rollback_that_stays_before_the_contract_crosses_nothing():
    result = release.release_contract(manifest("2", "0004"), [manifest("3", "0006")], ["0006"])
    assert result["undone"] == ["0005", "0006"] and result["contract"] == ["0005"]
    result = release.release_contract(manifest("2", "0005"), [manifest("3", "0006")], ["0006"])
    assert (result["undone"], result["contract"]) == (["0006"], [])


def test_branches_and_merges():
    graph = {"a": {"down": [], "contract": False}, "b1": {"down": ["a"], "contract": True},
             "b2": {"down": ["a"], "contract": False}, "m": {"down": ["b1", "b2"], "contract": False}}
    result = release.release_contract(manifest("2", "m", graph), [], ["b2"])
    assert result["applied"] == ["b1", "m"] and result["contract"] == ["b1"]
    # Two heads in the database, one of them on the other branch.
    result = release.release_contract(manifest("2", "b2", graph), [manifest("3", "m", graph)], ["b1", "b2"])
    assert (result["undone"], result["contract"]) == (["b1"], ["b1"])


def test_the_first_install_crosses_nothing():
    result = release.release_contract(manifest("1", "0006"), [], [], running=False)
    assert (result["applied"], result["contract"], result["unknown"]) == ([], [], "")


def test_an_empty_database_under_running_hosts_gets_every_migration():
    result = release.release_contract(manifest("1", "0006"), [], [])
    assert result["applied"] == ["0001", "0002", "0003", "0004", "0005", "0006"] and result["contract"] == ["0005"]


def test_what_cannot_be_decided_says_why():
    result = release.release_contract(manifest("2", "0005"), [], None)
    assert result["unknown"].startswith("no app host answered /readyz with the database's revision")
    result = release.release_contract(manifest("2", "0005"), [manifest("1", "0004")], ["0009_by_hand"])
    assert result["unknown"].startswith("0009_by_hand is in none of the release manifests read")
    assert "the crossing cannot be decided: 0009_by_hand is in none" in release.describe(result)
    assert release.release_contract({}, [], ["0004"])["unknown"] == "the release's manifest names no alembic_head"


# ---------------------------------------------------------------- build-release's reading
def write_migration(directory, revision, down, extra=""):
    (directory / f"{revision}.py").write_text(
        f'"""{revision}"""\nfrom alembic import op\n\nrevision = "{revision}"\ndown_revision = {down!r}\n'
        f"branch_labels = None\n{extra}\n\ndef upgrade():\n    op.drop_column('t', 'c')\n")


def test_build_release_records_the_graph_and_the_contract_marker(tmp_path):
    write_migration(tmp_path, "0001_a", None)
    write_migration(tmp_path, "0002_b", "0001_a", "contract = True")
    write_migration(tmp_path, "0003_c", "0002_b", "contract: bool = False")
    graph = build.migration_graph(tmp_path)
    assert graph == {"0001_a": {"down": [], "contract": False}, "0002_b": {"down": ["0001_a"], "contract": True},
                     "0003_c": {"down": ["0002_b"], "contract": False}}
    assert build.migration_heads(graph) == ["0003_c"]


@pytest.mark.parametrize("marker", ['contract = "yes"', "contract = 1", "contract = is_contract()"])
def test_build_release_refuses_a_marker_that_is_not_true_or_false(tmp_path, marker):
    write_migration(tmp_path, "0001_a", None, marker)
    with pytest.raises(SystemExit, match=r"0001_a\.py: contract must be True or False"):
        build.migration_graph(tmp_path)


def test_the_apps_migrations_parse_and_have_one_head():
    graph = build.migration_graph()
    assert build.migration_heads(graph) == [build.schema_head()]
    assert all(isinstance(info["contract"], bool) for info in graph.values())


# ---------------------------------------------------------------- the playbook check
class Readyz(http.server.ThreadingHTTPServer):
    """A stand-in app's /readyz reporting the database's revision (None: 503 unavailable)."""

    def __init__(self):
        self.database = "0004"

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):  # noqa: N802,N805 - http.server's name; the server is self
                if self.database is None:
                    body = {"status": "not_ready", "error": "database_unavailable",
                            "schema": {"database": None, "code": "x", "relation": None}}
                else:
                    body = {"status": "ready", "schema": {"database": self.database, "code": "x", "relation": "equal"}}
                data = json.dumps(body).encode()
                handler.send_response(200 if self.database else 503)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/readyz"


class Site:
    """The fixture inventory, each app host a directory (releases with manifests, links), a
    dist/ of artifacts, and a playbook of app.yml's first plays around release-contract.yml."""

    def __init__(self, tmp_path, readyz):
        self.tmp = tmp_path
        self.readyz = readyz
        self.inventory = tmp_path / "inventory"
        shutil.copytree(FIXTURE, self.inventory)
        (self.inventory / "host_vars").mkdir()
        for host in APPS:
            (self.root(host) / "releases").mkdir(parents=True)
            (self.inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump({
                "socialsphere_app_root": str(self.root(host)),
                "socialsphere_app_deploy_lock": str(self.root(host) / ".deploy-lock"),
                "socialsphere_app_deploy_log": str(tmp_path / host / "deploys.log"),
            }))
        (tmp_path / "dist").mkdir()
        (tmp_path / "playbooks").mkdir()
        tasks = REPO / "playbooks" / "tasks"
        self.flow = tmp_path / "playbooks" / "contract.yml"
        self.flow.write_text(yaml.safe_dump([
            {"name": "Resolve the release", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "Stand in for release-version.yml",
                        "ansible.builtin.set_fact": {"app_release_version": "{{ socialsphere_release }}"}}]},
            {"name": "Refuse a contract migration", "hosts": "app", "gather_facts": False, "any_errors_fatal": True,
             "vars_files": [str(REPO / "playbooks" / "vars" / "deploy.yml")],
             "tasks": [{"name": "Check", "ansible.builtin.import_tasks": str(tasks / "release-contract.yml")}]},
            {"name": "Record what passed", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "Write the crossing", "ansible.builtin.copy": {
                 "content": "{{ app_release_crossing | to_json }}", "dest": str(tmp_path / "passed.json"),
                 "mode": "0644"}}]},
        ]))

    def root(self, host):
        return self.tmp / host / "srv"

    def install(self, version, head, *, current=False, previous=False, hosts=APPS, graph=True):
        data = manifest(version, head)
        if not graph:
            del data["migrations"]
        for host in hosts:
            path = self.root(host) / "releases" / version
            path.mkdir(exist_ok=True)
            (path / "manifest.json").write_text(json.dumps(data))
            for name, wanted in (("current", current), ("previous", previous)):
                link = self.root(host) / name
                if wanted:
                    link.unlink(missing_ok=True)
                    link.symlink_to(path)

    def artifact(self, version, head):
        data = json.dumps(manifest(version, head)).encode()
        with tarfile.open(self.tmp / "dist" / f"socialsphere-{version}.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    def run(self, version, playbook=None, **extra_vars):
        (self.tmp / "passed.json").unlink(missing_ok=True)
        variables = {"socialsphere_release": version, "ansible_become": False, "app_readyz_url": self.readyz.url,
                     **extra_vars}
        rc, out = run_playbook(self.inventory / "hosts.yml", str(playbook or self.flow), "-e", json.dumps(variables),
                               timeout=300, env=local_env())
        passed = json.loads((self.tmp / "passed.json").read_text()) if (self.tmp / "passed.json").exists() else None
        return rc, " ".join(out.split()), passed


@pytest.fixture
def site(tmp_path):
    readyz = Readyz()
    s = Site(tmp_path, readyz)
    s.install("1.0", "0004", current=True)
    yield s
    readyz.shutdown()


def test_a_deploy_with_a_contract_migration_is_refused_naming_it_and_the_flag(site):
    site.artifact("2.0", "0005")
    rc, out, passed = site.run("2.0")
    assert rc != 0 and passed is None
    assert ("The deploy of 2.0 is refused: it applies the contract migration(s) 0005, which the release the app "
            "hosts run may not work with (database at 0004, release head 0005).") in out, out[-3000:]
    assert "fab deploy --contract or fab rollback --contract (-e app_release_contract=true)" in out
    assert "Nothing was changed." in out


def test_the_flag_lets_it_through_and_says_what_it_crosses(site):
    site.artifact("2.0", "0005")
    rc, out, passed = site.run("2.0", app_release_contract=True)
    assert rc == 0, out[-3000:]
    assert passed["contract"] == ["0005"] and passed["applied"] == ["0005"]
    assert "app_release_contract=true: it applies the contract migration(s) 0005" in out
    assert "the maintenance page goes on before the migration" in out


def test_a_release_of_expand_migrations_goes_without_the_flag(site):
    site.artifact("1.1", "0004")
    rc, out, passed = site.run("1.1")
    assert rc == 0, out[-3000:]
    assert (passed["applied"], passed["contract"], passed["database"]) == ([], [], ["0004"])


def test_a_deploy_after_the_contract_ran_crosses_nothing(site):
    site.install("2.0", "0005", current=True)
    site.readyz.database = "0005"
    site.artifact("3.0", "0006")
    rc, out, passed = site.run("3.0")
    assert rc == 0, out[-3000:]
    assert (passed["applied"], passed["contract"]) == (["0006"], [])


def test_a_rollback_across_the_contract_is_refused_without_the_flag(site):
    # 1.0's manifest predates the graph; 2.0 (current) knows 0005. No artifact: installed.
    site.install("1.0", "0004", previous=True, graph=False)
    site.install("2.0", "0005", current=True)
    site.readyz.database = "0005"
    rc, out, passed = site.run("1.0", app_deploy_kind="rollback", app_rollback=True)
    assert rc != 0 and passed is None
    assert ("The rollback of 1.0 is refused: the database has the contract migration(s) 0005, which the release "
            "(0004) predates: its code may need what they removed (database at 0005, release head 0004).") in out, \
        out[-3000:]
    rc, out, passed = site.run("1.0", app_deploy_kind="rollback", app_rollback=True, app_release_contract=True)
    assert rc == 0, out[-3000:]
    assert passed["undone"] == ["0005"]


def test_no_answer_from_any_app_host_is_refused_as_undecidable(site):
    site.artifact("2.0", "0004")
    site.readyz.database = None
    rc, out, _ = site.run("2.0")
    assert rc != 0
    assert "the crossing cannot be decided: no app host answered /readyz with the database's revision" in out, \
        out[-3000:]
    assert "(database at an unknown revision, release head 0004)" in out
    rc, out, _ = site.run("2.0", app_readyz_url="http://127.0.0.1:9/readyz")
    assert rc != 0 and "no app host answered /readyz" in out


def test_the_first_install_needs_no_flag(tmp_path):
    readyz = Readyz()
    try:
        s = Site(tmp_path, readyz)
        s.artifact("1.0", "0006")
        rc, out, passed = s.run("1.0", app_readyz_url="http://127.0.0.1:9/readyz")
        assert rc == 0, out[-3000:]
        assert passed["contract"] == [] and passed["database"] is None
    finally:
        readyz.shutdown()


def test_app_yml_refuses_before_the_deploy_lock(site):
    """The real playbook (a rollback: its release is installed, no artifact needed)."""
    site.install("1.0", "0004", previous=True)
    site.install("2.0", "0005", current=True)
    site.readyz.database = "0005"
    rc, out, _ = site.run("1.0", playbook=REPO / "playbooks" / "app.yml", app_preflight=False, app_rollback=True,
                          app_deploy_kind="rollback", socialsphere_app_migrate=False)
    assert rc != 0
    assert "The rollback of 1.0 is refused: the database has the contract migration(s) 0005" in out, out[-3000:]
    assert "PLAY [Take the deploy lock on every app host]" not in out
    for host in APPS:
        assert not (site.root(host) / ".deploy-lock").exists()
        assert not (site.tmp / host / "deploys.log").exists()
        assert (site.root(host) / "current").resolve().name == "2.0"


def test_app_yml_refuses_the_flag_without_the_activation(site):
    site.install("2.0", "0005")
    rc, out, _ = site.run("2.0", playbook=REPO / "playbooks" / "app.yml", app_preflight=False, app_rollback=True,
                          app_release_contract=True, app_activate=False)
    assert rc != 0
    assert "app_release_contract=true with app_activate=false would turn the maintenance page off" in out, out[-3000:]
    for host in APPS:
        assert not (site.root(host) / ".deploy-lock").exists()
