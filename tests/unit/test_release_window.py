"""scripts/release-window on deploy log lines written here (the format of
library/socialsphere_deploy.py's record, with playbooks/app.yml's out_of_rotation_seconds)."""
import json
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "release-window"


def line(run, host, seconds, t, result="ok"):
    return json.dumps({"time": t, "host": host, "who": "ops@cn", "command": "fab deploy", "kind": "deploy",
                       "batch": "1", "run": run, "from": "1.0.0", "to": "1.0.1", "result": result, "message": "",
                       "out_of_rotation_seconds": seconds})


def test_prints_each_host_median_and_max_of_the_last_runs(tmp_path):
    log1, log2 = tmp_path / "app1.log", tmp_path / "app2.log"
    log1.write_text("\n".join([line("r1", "app1", 20.5, "2026-01-01T10:00:00Z"), "not json",
                               line("r2", "app1", 7.2, "2026-01-02T10:00:00Z")]) + "\n")
    log2.write_text("\n".join([line("r1", "app2", 30.0, "2026-01-01T10:01:00Z"),
                               json.dumps({"run": "r2", "host": "app2", "result": "unchanged"}),
                               line("r2", "app2", 9.0, "2026-01-02T10:01:00Z", "rolled-back")]) + "\n")
    res = subprocess.run([sys.executable, str(SCRIPT), str(log1), str(log2)], capture_output=True, text=True,
                         timeout=60, check=True)
    out = res.stdout.splitlines()
    assert out[0].startswith("run r2: deploy 1.0.0 -> 1.0.1 (batch 1, ops@cn)")
    assert "app1" in out[1] and "7.2 s out of rotation" in out[1] and out[1].endswith("ok")
    assert "app2" in out[2] and "9.0 s" in out[2] and out[2].endswith("rolled-back")
    assert out[3] == "  median 8.1 s, max 9.0 s over 2 host(s)"
    res = subprocess.run([sys.executable, str(SCRIPT), "--runs", "2", "-"], input=log1.read_text() + log2.read_text(),
                         capture_output=True, text=True, timeout=60, check=True)
    assert res.stdout.index("run r1") < res.stdout.index("run r2")
    assert "median 25.2 s, max 30.0 s over 2 host(s)" in res.stdout


def test_no_figures_is_said_not_failed(tmp_path):
    log = tmp_path / "old.log"
    log.write_text(json.dumps({"run": "r0", "host": "app1", "result": "ok"}) + "\n")
    res = subprocess.run([sys.executable, str(SCRIPT), str(log)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "no run with out_of_rotation_seconds" in res.stdout
