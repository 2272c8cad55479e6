"""library/socialsphere_files.py: several files and directories in one module run.

Each test runs the module through ansible-playbook on this machine (local
connection) against a temporary directory, as the roles use it.
"""
import grp
import json
import os
import pwd
import stat

import yaml

from ansible_run import run_playbook

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def apply_each(tmp_path, runs, *extra):
    """One playbook run, one module call per item of `runs` (a list of `files`
    lists), each allowed to fail; return (rc, [result of each call], output)."""
    result = tmp_path / "result.json"
    tasks = [{"name": f"Apply {i}", "socialsphere_files": {"files": files}, "register": f"r{i}",
              "ignore_errors": True} for i, files in enumerate(runs)]
    results = "[" + ", ".join(f"r{i}" for i in range(len(runs))) + "]"
    tasks.append({"name": "Save", "ansible.builtin.copy": {"content": "{{ " + results + " | to_json }}", "dest": str(result)},
                  "check_mode": False, "diff": False})
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "tasks": tasks}]
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump(play))
    if result.exists():
        result.unlink()
    rc, out = run_playbook("localhost,", str(book), "-c", "local", *extra, timeout=120)
    return rc, json.loads(result.read_text()) if result.exists() else None, out


def apply(tmp_path, files, *extra):
    """Run the module once with `files`; return (failed, changed_paths, output)."""
    rc, results, out = apply_each(tmp_path, [files], *extra)
    assert rc == 0 and results is not None, out
    return bool(results[0].get("failed")), results[0].get("changed_paths"), out


def entry(path, **kw):
    return dict({"path": str(path), "owner": USER, "group": GROUP}, **kw)


def test_writes_then_changes_nothing(tmp_path):
    files = [
        entry(tmp_path / "conf.d", state="directory", mode="0750"),
        entry(tmp_path / "conf.d" / "a.conf", content="a = 1\n", mode="0640"),
        entry(tmp_path / "b", content="", mode="0600"),
    ]
    failed, changed, out = apply(tmp_path, files)
    assert not failed, out
    assert changed == [f["path"] for f in files]
    assert (tmp_path / "conf.d" / "a.conf").read_text() == "a = 1\n"
    assert stat.S_IMODE((tmp_path / "conf.d").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "conf.d" / "a.conf").stat().st_mode) == 0o640
    assert (tmp_path / "b").read_bytes() == b""
    failed, changed, out = apply(tmp_path, files)
    assert not failed and changed == [], out
    assert not list((tmp_path / "conf.d").glob(".socialsphere_files.*")), "temporary file left behind"


def test_fixes_content_and_mode_of_the_files_that_drifted(tmp_path):
    files = [entry(tmp_path / "a", content="wanted\n", mode="0644"),
             entry(tmp_path / "b", content="same\n", mode="0644")]
    assert not apply(tmp_path, files)[0]
    (tmp_path / "a").write_text("edited by hand\n")
    (tmp_path / "b").chmod(0o666)
    failed, changed, out = apply(tmp_path, files)
    assert not failed and changed == [files[0]["path"], files[1]["path"]], out
    assert (tmp_path / "a").read_text() == "wanted\n"
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644


def test_check_mode_reports_and_diffs_without_writing(tmp_path):
    files = [entry(tmp_path / "a", content="new\n", mode="0644"),
             entry(tmp_path / "missing", content="x\n", mode="0644"),
             entry(tmp_path / "dir", state="directory", mode="0755")]
    (tmp_path / "a").write_text("old\n")
    failed, changed, out = apply(tmp_path, files, "--check", "--diff")
    assert not failed and changed == [f["path"] for f in files], out
    assert "-old" in out and "+new" in out
    assert (tmp_path / "a").read_text() == "old\n"
    assert not (tmp_path / "missing").exists() and not (tmp_path / "dir").exists()


def test_absent_removes_a_file_once(tmp_path):
    (tmp_path / "gone").write_text("x")
    files = [entry(tmp_path / "gone", state="absent")]
    failed, changed, out = apply(tmp_path, files)
    assert not failed and changed == [files[0]["path"]] and not (tmp_path / "gone").exists(), out
    failed, changed, out = apply(tmp_path, files)
    assert not failed and changed == [], out


def test_bad_entries_fail_with_the_path_named(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        ([entry(tmp_path / "adir", content="x", mode="0644")], "is a directory"),
        ([entry(tmp_path / "afile", state="directory", mode="0755")], "exists and is not a directory"),
        ([entry(tmp_path / "adir", state="absent")], "state absent removes files only"),
        ([entry(tmp_path / "nomode", content="x")], "mode is required"),
        ([entry(tmp_path / "nocontent", mode="0644")], "state file needs content"),
        ([dict(entry(tmp_path / "x", content="x", mode="0644"), path="relative/x")], "path must be absolute"),
    ]
    rc, results, out = apply_each(tmp_path, [files for files, _ in cases])
    assert rc == 0 and results is not None, out
    for (files, message), result in zip(cases, results, strict=False):
        assert result.get("failed") and message in result.get("msg", ""), (files, result)
    assert (tmp_path / "afile").read_text() == "x" and (tmp_path / "adir").is_dir()
