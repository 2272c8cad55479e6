"""The release tools' bookkeeping, run for real on this machine (local connection; each
app host of the fixture inventory gets its own directory as socialsphere_app_root):

- the deploy lock and the deploy log of playbooks/app.yml: its task files
  (tasks/deploy-run.yml, deploy-lock-take.yml, deploy-finish.yml) and vars/deploy.yml
  around a stand-in activation (tests/unit/playbooks/deploy_flow.yml): a second deploy
  is refused naming the holder, a failed rollout still releases every lock, a stale
  lock is broken on request, each host records who, when, from, to and the result;
- library/socialsphere_deploy.py itself (atomic take, release of the own lock only);
- playbooks/app-unlock.yml and app-prune.yml as they are (fab unlock, fab prune), with
  the socialsphere_app role's prune: N kept, never `current` or `previous`;
- the batch size (ssai_release_batch), which app.yml hands to `serial`.

The activation itself (drain, switch, reload, the way back after a failure) needs
the lab: tests/e2e/test_release_rolling.py and test_release_tasks.py.
"""
import getpass
import json
import os
import pathlib
import shutil
import socket
import time

import pytest
import yaml

from ansible_run import local_env, local_os_as_supported, parse_recap, run_playbook

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "inventory_ok"
FLOW = pathlib.Path(__file__).parent / "playbooks" / "deploy_flow.yml"
APPS = ("app1", "app2", "app3")
GHOST = {"id": "20260102T030405Z-deadbeef", "who": "ghost@ops9", "since": "2026-01-02T03:04:05Z",
         "command": "fab deploy --version 9.9", "kind": "deploy", "version": "9.9", "batch": "1"}


class Hosts:
    """The fixture inventory with a directory per app host: root (releases, current,
    previous, the lock) and the deploy log."""

    def __init__(self, tmp_path):
        self.inventory = tmp_path / "inventory"
        shutil.copytree(FIXTURE, self.inventory)
        # A third app host, so that a batch of two leaves one in rotation.
        hosts_file = self.inventory / "hosts.yml"
        inventory = yaml.safe_load(hosts_file.read_text())
        inventory["all"]["children"]["app"]["hosts"] = {host: {} for host in APPS}
        hosts_file.write_text(yaml.safe_dump(inventory))
        (self.inventory / "host_vars").mkdir()
        self.base = tmp_path / "hosts"
        for host in APPS:
            root = self.root(host)
            (root / "releases").mkdir(parents=True)
            (self.inventory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump({
                "socialsphere_app_root": str(root),
                "socialsphere_app_deploy_lock": str(root / ".deploy-lock"),
                "socialsphere_app_deploy_log": str(self.log(host)),
            }))

    def root(self, host):
        return self.base / host / "srv"

    def lock(self, host):
        return self.root(host) / ".deploy-lock"

    def log(self, host):
        return self.base / host / "log" / "deploys.log"

    def records(self, host):
        path = self.log(host)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def install(self, host, *versions, current=None, previous=None):
        """Release directories, oldest first (an increasing mtime each), and the links."""
        root = self.root(host)
        for i, version in enumerate(versions):
            path = root / "releases" / version
            path.mkdir()
            stamp = time.time() - 1000 + i * 10
            os.utime(path, (stamp, stamp))
        for name, version in (("current", current), ("previous", previous)):
            if version:
                (root / name).symlink_to(root / "releases" / version)

    def releases(self, host):
        return sorted(p.name for p in (self.root(host) / "releases").iterdir())

    def playbook(self, playbook, *extra, **extra_vars):
        args = [*extra, "-e", "ansible_become=false"]
        if extra_vars:
            args += ["-e", json.dumps(extra_vars)]
        return run_playbook(self.inventory / "hosts.yml", str(playbook), *args, timeout=300, env=local_env())

    def flow(self, **extra_vars):
        extra_vars.setdefault("socialsphere_release", "2.0")
        return self.playbook(FLOW, **extra_vars)


@pytest.fixture
def hosts(tmp_path):
    h = Hosts(tmp_path)
    for host in APPS:
        h.install(host, "0.9", "1.0", current="1.0", previous="0.9")
    return h


# ---------------------------------------------------------------- the lock and the log
def test_a_rollout_takes_the_lock_releases_it_and_records_each_host(hosts):
    rc, out = hosts.flow(app_deploy_command="fab deploy --version 2.0")
    assert rc == 0, out[-3000:]
    runs = set()
    for host in APPS:
        assert not hosts.lock(host).exists(), f"{host}: the lock is still there"
        (line,) = hosts.records(host)
        assert line["host"] == host
        assert (line["from"], line["to"], line["result"], line["message"]) == ("1.0", "2.0", "ok", "")
        assert line["who"] == f"{getpass.getuser()}@{socket.gethostname()}"
        assert (line["command"], line["kind"], line["batch"]) == ("fab deploy --version 2.0", "deploy", "1")
        assert line["time"].endswith("Z") and line["time"][:2] == "20"
        runs.add(line["run"])
    assert len(runs) == 1, runs
    # The bookkeeping changes nothing that a converge compares: only the stand-in
    # activation (one file per host) counts.
    for host, counts in parse_recap(out).items():
        assert counts["changed"] == (1 if host in APPS else 0), (host, counts)


def test_the_default_command_says_how_the_playbook_ran(hosts):
    rc, out = hosts.flow()
    assert rc == 0, out[-3000:]
    assert hosts.records("app1")[-1]["command"] == "ansible-playbook -e socialsphere_release=2.0"


def test_a_second_deploy_is_refused_naming_the_holder_and_changes_nothing(hosts):
    hosts.lock("app2").write_text(json.dumps(GHOST))
    rc, out = hosts.flow()
    assert rc != 0
    assert (f"app2: {hosts.lock('app2')} is held by ghost@ops9 since 2026-01-02T03:04:05Z "
            "(deploy of 9.9: fab deploy --version 9.9; run 20260102T030405Z-deadbeef)") in out, out[-3000:]
    assert "fab unlock" in out and "-e app_deploy_lock_break=true" in out
    assert not hosts.lock("app1").exists(), "app1's lock was not given back"
    assert json.loads(hosts.lock("app2").read_text()) == GHOST, "the holder's lock was touched"
    for host in APPS:
        assert not (hosts.root(host) / "activated").exists()
        assert hosts.records(host) == []


def test_an_unreadable_lock_is_a_held_lock(hosts):
    hosts.lock("app1").write_text("{half a lock")
    rc, out = hosts.flow()
    assert rc != 0
    assert "is held by unknown (unreadable lock file) since 20" in out, out[-3000:]
    assert not hosts.lock("app2").exists()


def test_a_stale_lock_is_broken_on_request_and_recorded(hosts):
    hosts.lock("app1").write_text(json.dumps(GHOST))
    rc, out = hosts.flow(app_deploy_lock_break=True)
    assert rc == 0, out[-3000:]
    assert "app1: broke the deploy lock of ghost@ops9 since 2026-01-02T03:04:05Z" in " ".join(out.split())
    broken, done = hosts.records("app1")
    assert broken["result"] == "lock-broken" and broken["holder"] == GHOST
    assert done["result"] == "ok"
    assert not hosts.lock("app1").exists()


def test_a_failed_rollout_stops_there_and_still_releases_every_lock(hosts):
    rc, out = hosts.flow(fail_on=["app1"])
    assert rc != 0
    assert "stopped at app1: app1: Fail where the test says so: app1 cannot start 2.0; back on 1.0 (rolled-back)" in out, \
        out[-3000:]
    assert "the deploy lock is released" in out
    for host in APPS:
        assert not hosts.lock(host).exists(), f"{host}: a failed deploy left its lock"
    (first,) = hosts.records("app1")
    (second,) = hosts.records("app2")
    assert (first["result"], first["from"], first["to"]) == ("rolled-back", "1.0", "2.0")
    assert "cannot start 2.0" in first["message"]
    assert second["result"] == "not-started"
    assert not (hosts.root("app2") / "activated").exists(), "a later batch ran after the failure"
    # Nothing blocks the next run (a rollback).
    rc, out = hosts.flow(socialsphere_release="1.0", app_deploy_kind="rollback")
    assert rc == 0, out[-3000:]
    assert hosts.records("app2")[-1]["kind"] == "rollback"


def test_a_failure_in_a_batch_of_two_keeps_the_other_hosts_result(hosts):
    rc, out = hosts.flow(fail_on=["app1"], app_batch=2)
    assert rc != 0
    assert hosts.records("app1")[-1]["result"] == "rolled-back"
    assert hosts.records("app2")[-1]["result"] == "ok"
    assert (hosts.root("app2") / "activated").read_text() == "2.0 batch app1,app2\n"
    assert hosts.records("app3")[-1]["result"] == "not-started"
    assert not (hosts.root("app3") / "activated").exists()


@pytest.mark.parametrize(("batch", "batches"), [(1, ["app1", "app2", "app3"]), ("2", ["app1,app2"] * 2 + ["app3"]),
                                                ("50%", ["app1", "app2", "app3"]),
                                                ("67%", ["app1,app2"] * 2 + ["app3"])])
def test_the_batch_size_is_the_activation_plays_serial(hosts, batch, batches):
    rc, out = hosts.flow(app_batch=batch)
    assert rc == 0, out[-3000:]
    for host, expected in zip(APPS, batches, strict=True):
        assert (hosts.root(host) / "activated").read_text() == f"2.0 batch {expected}\n"
        assert hosts.records(host)[-1]["batch"] == str(batch).rstrip("%") + ("%" if "%" in str(batch) else "")


@pytest.mark.parametrize("batch", ["3", "4", "100%"])
def test_a_batch_of_every_app_host_is_refused_before_any_lock(hosts, batch):
    rc, out = hosts.flow(app_batch=batch)
    assert rc != 0
    assert (f"app_batch={batch} activates all 3 app hosts at once: each one of a batch is drained first, "
            "so HAProxy would have no server left") in " ".join(out.split()), out[-2000:]
    assert "Use at most 2 host(s) at a time" in " ".join(out.split())
    for host in APPS:
        assert not hosts.lock(host).exists()
        assert not hosts.records(host)


@pytest.mark.parametrize("batch", ["0", "0%", "150%", "two", "-1", ""])
def test_a_bad_batch_is_refused_before_any_lock(hosts, batch):
    rc, out = hosts.flow(app_batch=batch)
    assert rc != 0
    assert "the batch is a number of hosts (1, 2, ...) or a percentage of the app hosts (1% to 100%)" in out, out[-2000:]
    for host in APPS:
        assert not hosts.lock(host).exists()


# ---------------------------------------------------------------- fab unlock, fab prune
def test_app_unlock_breaks_every_lock_and_records_the_holder(hosts):
    hosts.lock("app2").write_text(json.dumps(GHOST))
    rc, out = hosts.playbook(pathlib.Path("app-unlock.yml"), app_deploy_command="fab unlock")
    assert rc == 0, out[-3000:]
    assert "app2: broke the deploy lock of ghost@ops9 since 2026-01-02T03:04:05Z" in " ".join(out.split())
    assert "app1: no deploy lock" in out
    assert not hosts.lock("app2").exists()
    (line,) = hosts.records("app2")
    assert (line["result"], line["kind"], line["command"], line["holder"]) == ("lock-broken", "unlock", "fab unlock",
                                                                             GHOST)
    assert hosts.records("app1") == []


@pytest.fixture
def many(tmp_path):
    """Six releases, `current` on an old one (a rollback) and `previous` on the oldest."""
    h = Hosts(tmp_path)
    for host in APPS:
        h.install(host, "r1", "r2", "r3", "r4", "r5", "r6", current="r2", previous="r1")
    return h


def prune(hosts, *extra, **extra_vars):
    return hosts.playbook(pathlib.Path("app-prune.yml"), "-e", local_os_as_supported(), *extra, **extra_vars)


@pytest.mark.parametrize(("keep", "kept"), [(2, ["r1", "r2", "r5", "r6"]), (0, ["r1", "r2"]), (5, ["r1", "r2", "r3", "r4",
                                                                                                   "r5", "r6"])])
def test_prune_keeps_the_newest_and_never_current_or_previous(many, keep, kept):
    rc, out = prune(many, socialsphere_app_keep_releases=keep, app_deploy_command="fab prune")
    assert rc == 0, out[-3000:]
    for host in APPS:
        assert many.releases(host) == kept
        assert not many.lock(host).exists()
        removed = sorted(set(["r1", "r2", "r3", "r4", "r5", "r6"]) - set(kept))
        records = many.records(host)
        if removed:
            (line,) = records
            assert (line["kind"], line["result"], sorted(line["removed"]), line["current"], line["previous"]) == \
                ("prune", "ok", removed, "r2", "r1")
        else:
            assert records == []


def test_prune_with_the_default_keeps_five(many):
    rc, out = prune(many)
    assert rc == 0, out[-3000:]
    for host in APPS:
        assert many.releases(host) == ["r1", "r2", "r3", "r4", "r5", "r6"]  # 5 newest + current + previous


def test_prune_waits_for_no_deploy(many):
    many.lock("app1").write_text(json.dumps(GHOST))
    rc, out = prune(many, socialsphere_app_keep_releases=0)
    assert rc != 0
    assert "is held by ghost@ops9 since 2026-01-02T03:04:05Z" in out
    assert many.releases("app2") == ["r1", "r2", "r3", "r4", "r5", "r6"]
    assert not many.lock("app2").exists()


# ---------------------------------------------------------------- the module alone
def module(tmp_path, *calls):
    """Run library/socialsphere_deploy.py once per call (a dict of its options) in one
    playbook on localhost; return the registered results."""
    result = tmp_path / "results.json"
    tasks = [{"name": f"Call {i}", "socialsphere_deploy": call, "register": f"r{i}"} for i, call in enumerate(calls)]
    tasks.append({"name": "Save", "ansible.builtin.copy": {
        "content": "{{ [" + ", ".join(f"r{i}" for i in range(len(calls))) + "] | to_json }}", "dest": str(result),
        "mode": "0644"}})
    book = tmp_path / "module.yml"
    book.write_text(yaml.safe_dump([{"name": "Module", "hosts": "localhost", "gather_facts": False,
                                     "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                                     "tasks": tasks}]))
    rc, out = run_playbook("localhost,", str(book), "-c", "local", timeout=120, env=local_env())
    assert rc == 0, out[-3000:]
    return json.loads(result.read_text())


def test_the_module_takes_once_per_run_and_releases_only_its_own(tmp_path):
    lock = str(tmp_path / "srv" / ".deploy-lock")
    a = {"id": "A", "who": "a@one"}
    b = {"id": "B", "who": "b@two"}
    take_a, again_a, take_b, release_b, release_a, take_b2 = module(
        tmp_path,
        {"action": "take", "lock": lock, "run": a},
        {"action": "take", "lock": lock, "run": a},
        {"action": "take", "lock": lock, "run": b},
        {"action": "release", "lock": lock, "run": b},
        {"action": "release", "lock": lock, "run": a},
        {"action": "take", "lock": lock, "run": b},
    )
    assert (take_a["taken"], take_a["changed"]) == (True, True)
    assert (again_a["taken"], again_a["changed"]) == (True, False)
    assert take_b["taken"] is False and take_b["holder"]["who"] == "a@one" and "held by a@one" in take_b["message"]
    assert release_b["released"] is False and release_b["holder"]["id"] == "A"
    assert release_a["released"] is True
    assert take_b2["taken"] is True
    assert json.loads(pathlib.Path(lock).read_text())["who"] == "b@two"
    assert oct(pathlib.Path(lock).stat().st_mode & 0o777) == "0o644"


def test_the_module_reports_current_and_previous(tmp_path):
    root = tmp_path / "srv"
    (root / "releases" / "1.0").mkdir(parents=True)
    (root / "current").symlink_to(root / "releases" / "1.0")
    (take,) = module(tmp_path, {"action": "take", "lock": str(root / ".deploy-lock"), "root": str(root),
                                "run": {"id": "A"}})
    assert (take["current"], take["previous"]) == ("1.0", "")


def test_the_module_appends_records_root_only(tmp_path):
    log = tmp_path / "log" / "deploys.log"
    module(tmp_path,
           {"action": "record", "log": str(log), "host": "app1", "run": {"id": "A", "who": "a@one"},
            "record": {"from": "1", "to": "2", "result": "ok"}},
           {"action": "record", "log": str(log), "host": "app1", "run": {"id": "B", "who": "b@two"},
            "record": {"from": "2", "to": "1", "result": "failed"}})
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["run"], x["who"], x["from"], x["to"], x["result"]) for x in lines] == \
        [("A", "a@one", "1", "2", "ok"), ("B", "b@two", "2", "1", "failed")]
    assert oct(log.stat().st_mode & 0o777) == "0o640"
    assert oct(log.parent.stat().st_mode & 0o777) == "0o750"


def test_the_module_changes_nothing_in_check_mode(tmp_path):
    lock = tmp_path / "srv" / ".deploy-lock"
    log = tmp_path / "log" / "deploys.log"
    result = tmp_path / "r.json"
    book = tmp_path / "check.yml"
    book.write_text(yaml.safe_dump([{"name": "Check", "hosts": "localhost", "gather_facts": False,
                                     "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                                     "tasks": [
                                         {"name": "Take", "socialsphere_deploy": {"action": "take", "lock": str(lock),
                                                                                  "run": {"id": "A"}}, "register": "t"},
                                         {"name": "Record", "socialsphere_deploy": {"action": "record", "log": str(log),
                                                                                    "run": {"id": "A"}}},
                                         {"name": "Save", "ansible.builtin.copy": {"content": "{{ t | to_json }}",
                                                                                   "dest": str(result), "mode": "0644"},
                                          "check_mode": False}]}]))
    rc, out = run_playbook("localhost,", str(book), "-c", "local", "--check", timeout=120, env=local_env())
    assert rc == 0, out[-3000:]
    assert json.loads(result.read_text())["taken"] is True
    assert not lock.exists() and not log.exists()
