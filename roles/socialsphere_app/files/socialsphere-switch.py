#!/usr/bin/python3
"""Switch this app host to a release and wait until Gunicorn serves it: the whole
drained window of a release in one call (installed by roles/socialsphere_app in
/usr/local/lib/socialsphere beside running-state.py, which it reads the workers with;
tasks_from: switch and restore run it).

    socialsphere-switch.py --root /srv/socialsphere --release 1.0.1+gdef \\
        --url http://10.0.20.21:8000/readyz [--timeout 60] [--interval 0.2] \\
        [--restart] [--restore] [--previous NAME | --no-previous] [--unit socialsphere.service]

In order:
1. the release must be complete (<root>/releases/<release>/venv/.complete);
2. `previous` (atomic symlink rename): by default the release `current` leaves (left
   as it is when `current` already points at the release); --previous NAME /
   --no-previous set it (restore: where it pointed before the failed activation);
3. `current` switched to the release (atomic symlink rename);
4. Gunicorn: restarted (`systemctl reset-failed` first, `daemon-reload` when systemd
   says the unit changed on disk) with --restart, when <root>/.activation-pending says
   "restart" (the unit changed, written by tasks_from: stage), when the service is not
   running, or with --restore when `current` moved back (the failed release may have
   left the master broken); otherwise reloaded gracefully (HUP: new workers on the
   new release, old ones finish their requests);
5. wait, polling every --interval, until every worker of the main process runs the
   release (a reload's old workers have finished; a release whose workers cannot boot
   never gets there) and --url answers 200; at most --timeout seconds;
6. <root>/.activation-pending removed.

Prints one JSON line: from, to, action (reload | restart), seconds (the switch to
/readyz 200), workers. Exit 0 done; 1 failed (the message names the step and the last
state seen); 2 usage.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REQUEST_TIMEOUT = 2.0


class SwitchError(Exception):
    pass


def _beside(name: str, filename: str):
    """A script installed beside this one, as a module."""
    spec = importlib.util.spec_from_file_location(name, HERE / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# running-state.py: one source for reading the main process and its workers, and for
# the name of the pending-activation file; socialsphere-readyz.py: the /readyz probe.
STATE = _beside("running_state", "running-state.py")
READYZ = _beside("socialsphere_readyz", "socialsphere-readyz.py")
PENDING = STATE.PENDING


def link(target: Path, path: Path) -> None:
    """Point the symlink `path` at `target` atomically (a new link renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def systemctl(*args: str) -> subprocess.CompletedProcess:
    # systemctl from PATH with an argument list, no shell; the unit name is the role's own.
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)  # noqa: S603, S607


def unit_properties(unit: str) -> dict[str, str]:
    out = systemctl("show", unit, "--property=ActiveState,NeedDaemonReload,LoadState,MainPID").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def read_pending(root: Path) -> str:
    try:
        return (root / PENDING).read_text().strip()
    except OSError:
        return ""


def switch_links(root: Path, release: str, previous: str | None, no_previous: bool) -> tuple[str, bool]:
    """Steps 1-3; returns (the release `current` pointed to, whether `current` moved)."""
    release_dir = root / "releases" / release
    if not (release_dir / "venv" / ".complete").is_file():
        raise SwitchError(f"{release_dir} is not a complete release (no venv/.complete): nothing switched")
    current = root / "current"
    try:
        old_target = os.readlink(current)
    except OSError:
        old_target = ""
    old = os.path.basename(old_target.rstrip("/"))
    if previous:
        if not (root / "releases" / previous).is_dir():
            raise SwitchError(f"--previous {previous}: {root / 'releases' / previous} is not installed")
        link(root / "releases" / previous, root / "previous")
    elif no_previous:
        if (root / "previous").is_symlink():
            (root / "previous").unlink()
    elif old_target and old != release:
        link(Path(old_target), root / "previous")
    moved = os.path.realpath(current) != os.path.realpath(release_dir)
    if moved:
        link(release_dir, current)
    return old, moved


def restart_or_reload(args: argparse.Namespace, moved: bool) -> str:
    """Step 4; returns the action taken."""
    props = unit_properties(args.unit)
    reasons = [why for why, yes in (
        ("--restart", args.restart),
        (f"{PENDING} says restart", read_pending(args.root) == "restart"),
        (f"{args.unit} is {props.get('ActiveState', 'unknown')}", props.get("ActiveState") != "active"),
        ("back on the release it ran (--restore)", args.restore and moved),
    ) if yes]
    if props.get("NeedDaemonReload") == "yes" or props.get("LoadState") != "loaded":
        res = systemctl("daemon-reload")
        if res.returncode:
            raise SwitchError(f"systemctl daemon-reload failed: {res.stderr.strip()}")
    if reasons:
        systemctl("reset-failed", args.unit)  # a unit that has not failed is left as it is
        action, res = "restart", systemctl("restart", args.unit)
    else:
        action, res = "reload", systemctl("reload", args.unit)
    if res.returncode:
        raise SwitchError(f"systemctl {action} {args.unit} failed ({'; '.join(reasons) or 'graceful'}): "
                          f"{res.stderr.strip()}")
    return action


def wait_serving(args: argparse.Namespace) -> list[str]:
    """Step 5: every worker on the release, then /readyz 200; returns the workers."""
    deadline = time.monotonic() + args.timeout
    workers, answer, pid = [], "not asked yet", 0
    while True:
        pid = STATE.main_pid(args.unit)
        workers = STATE.worker_releases(pid) if pid else []
        if workers and set(workers) == {args.release}:
            ok, answer = READYZ.probe(args.url, REQUEST_TIMEOUT)
            if ok:
                return workers
        if time.monotonic() >= deadline:
            raise SwitchError(
                f"Gunicorn does not serve {args.release} after {args.timeout:g}s: main process {pid or 'none'}, "
                f"workers on {', '.join(sorted(set(workers))) or 'none'}, {args.url}: {answer}")
        time.sleep(args.interval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="socialsphere-switch",
                                     description="Switch `current` to a release, reload or restart Gunicorn, "
                                                 "wait until every worker runs it and /readyz answers 200.")
    parser.add_argument("--root", type=Path, required=True, help="the app root (releases/, current, previous)")
    parser.add_argument("--release", required=True, help="the release (a directory name under releases/)")
    parser.add_argument("--url", required=True, help="the /readyz URL, e.g. http://10.0.20.21:8000/readyz")
    parser.add_argument("--unit", default="socialsphere.service", help="the Gunicorn unit (default: %(default)s)")
    seconds = READYZ.positive_seconds
    parser.add_argument("--timeout", type=seconds, default=60.0, help="seconds to wait at most (default: 60)")
    parser.add_argument("--interval", type=seconds, default=0.2, help="seconds between checks (default: 0.2)")
    parser.add_argument("--restart", action="store_true", help="restart instead of a graceful reload")
    parser.add_argument("--restore", action="store_true",
                        help="going back after a failed activation: restart when `current` moves back")
    previous = parser.add_mutually_exclusive_group()
    previous.add_argument("--previous", metavar="NAME", help="point `previous` at this release")
    previous.add_argument("--no-previous", action="store_true", help="remove `previous`")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https"):
        parser.error(f"not an http(s) URL: {args.url}")
    if "/" in args.release or args.release in ("", ".", ".."):
        parser.error(f"not a release name: {args.release!r}")
    try:
        t0 = time.monotonic()
        old, moved = switch_links(args.root, args.release, args.previous, args.no_previous)
        action = restart_or_reload(args, moved)
        workers = wait_serving(args)
        (args.root / PENDING).unlink(missing_ok=True)
    except SwitchError as exc:
        print(f"socialsphere-switch: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"from": old, "to": args.release, "switched": moved, "action": action,
                      "seconds": round(time.monotonic() - t0, 2), "workers": workers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
