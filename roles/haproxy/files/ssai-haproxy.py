#!/usr/bin/python3
"""ssai-haproxy: drain, re-enable and watch the app servers of the edge HAProxy.

The one client of HAProxy's runtime API that the release tools use (Fabric, the
app playbook, the end-to-end tests, the runbooks). Installed by roles/haproxy as
/usr/local/sbin/ssai-haproxy; the backend and the admin socket come from
/etc/haproxy/ssai-haproxy.json, which the role writes from its variables.

    ssai-haproxy status [--json]             servers: admin state, status, check, sessions
    ssai-haproxy status --watch 0.25         one JSON line (time, servers) every 0.25 s until stopped
    ssai-haproxy drain app1                  set server <backend>/app1 state drain
    ssai-haproxy drain --keep-last app1      ... unless app1 is the only server in rotation
    ssai-haproxy drain --wait app1           ... then wait until it has 0 current sessions (one call)
    ssai-haproxy ready app1                  ... state ready (out of drain or maintenance)
    ssai-haproxy ready --wait app1           ... then wait until the health check reports it UP
    ssai-haproxy maint app1                  ... state maint
    ssai-haproxy wait-drained app1 --timeout 60   until app1 (drained) has 0 current sessions
    ssai-haproxy wait-up app1 --timeout 90        until the health check reports app1 UP
    ssai-haproxy api show table st_login     any other runtime API command, answer printed as is

--missing-ok: a server this HAProxy does not know (not added yet) is nothing to do.
--wait (drain, ready): the change and its wait-drained / wait-up in one call, with
--timeout and --interval as those take them (a release's drained window is a few
round trips to each edge host, not two per state change).

Exit codes: 0 done; 1 failed (unknown server, refused command); 2 usage;
3 no runtime API (HAProxy not running, or the socket is missing); 4 timed out.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import select
import socket
import stat
import sys
import time
from dataclasses import asdict, dataclass

CONFIG = "/etc/haproxy/ssai-haproxy.json"
API_TIMEOUT = 10.0

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_API = 3
EXIT_TIMEOUT = 4

# What `drain --keep-last` prints when it leaves the server in rotation.
KEPT = "kept in rotation"

# srv_admin_state bits of `show servers state` (HAProxy management guide).
ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, DNS, hostname
ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited


class CtlError(Exception):
    """A failure to report: the message goes to stderr, the code is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


@dataclass
class Server:
    name: str
    admin: str  # ready | drain | maint (from srv_admin_state)
    status: str  # show stat: UP, DOWN, DRAIN, MAINT, "UP 1/2", "no check"...
    check: str  # show stat check_status (+ check_code): L7OK/200, L4CON...
    sessions: int  # scur: current sessions
    total: int  # stot: sessions since start
    lastchg: int  # seconds since the last status change
    weight: int
    address: str

    @property
    def up(self) -> bool:
        # The health check says UP: "UP", or "UP 1/2" (one check failed, not down yet).
        return self.status.split(" ")[0] == "UP"

    def describe(self) -> str:
        return f"admin {self.admin}, status {self.status}, check {self.check or '-'}, sessions {self.sessions}"


# ---------------------------------------------------------------- parsing
def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def parse_show_stat(text: str) -> list[dict[str, str]]:
    """Rows of `show stat` (CSV, header line "# pxname,svname,..."), as dicts."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise CtlError(f"unexpected answer to 'show stat': {text.strip()[:200]!r}")
    header = lines[0][2:].split(",")
    return [dict(zip(header, row, strict=False)) for row in csv.reader(lines[1:])]


def parse_servers_state(text: str) -> list[dict[str, str]]:
    """Rows of `show servers state` (a format version line, a "# be_id be_name ..."
    header, then space-separated rows), as dicts."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[1].startswith("# "):
        raise CtlError(f"unexpected answer to 'show servers state': {text.strip()[:200]!r}")
    header = lines[1][2:].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[2:]]


def admin_state(flags: int) -> str:
    if flags & ADMIN_MAINT:
        return "maint"
    if flags & ADMIN_DRAIN:
        return "drain"
    return "ready"


def backend_servers(stat_text: str, state_text: str, backend: str) -> dict[str, Server]:
    """The servers of `backend`, by name, from the answers to `show stat` and
    `show servers state <backend>`."""
    flags = {row["srv_name"]: _int(row.get("srv_admin_state", "0"))
             for row in parse_servers_state(state_text) if row.get("be_name") == backend}
    servers = {}
    for row in parse_show_stat(stat_text):
        name = row.get("svname", "")
        if row.get("pxname") != backend or name in ("FRONTEND", "BACKEND"):
            continue
        check = row.get("check_status", "")
        if check and row.get("check_code"):
            check += "/" + row["check_code"]
        servers[name] = Server(
            name=name, admin=admin_state(flags.get(name, 0)), status=row.get("status", ""), check=check,
            sessions=_int(row.get("scur", "0")), total=_int(row.get("stot", "0")),
            lastchg=_int(row.get("lastchg", "0")), weight=_int(row.get("weight", "0")), address=row.get("addr", ""),
        )
    return servers


# ---------------------------------------------------------------- runtime API
class RuntimeApi:
    def __init__(self, socket_path: str, backend: str):
        self.socket_path = socket_path
        self.backend = backend

    def command(self, line: str) -> str:
        """One command on a new connection (non-interactive mode: HAProxy answers and closes)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(API_TIMEOUT)
        try:
            try:
                sock.connect(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise CtlError(f"no HAProxy runtime API at {self.socket_path} ({exc.strerror}): is HAProxy running?",
                               EXIT_NO_API) from exc
            except PermissionError as exc:
                raise CtlError(f"{self.socket_path}: permission denied (run as root)") from exc
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError as exc:
            raise CtlError(f"HAProxy did not answer {line!r} within {API_TIMEOUT:.0f}s") from exc
        finally:
            sock.close()
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> dict[str, Server]:
        state = self.command(f"show servers state {self.backend}")
        if state.strip() == "Can't find backend.":
            raise CtlError(f"HAProxy has no backend {self.backend!r} ({self.socket_path})")
        return backend_servers(self.command("show stat"), state, self.backend)

    def server(self, name: str, missing_ok: bool = False) -> Server | None:
        servers = self.servers()
        if name in servers:
            return servers[name]
        if missing_ok:
            return None
        known = ", ".join(sorted(servers)) or "none"
        raise CtlError(f"backend {self.backend} has no server {name!r} (its servers: {known})")

    def set_state(self, name: str, state: str) -> None:
        answer = self.command(f"set server {self.backend}/{name} state {state}").strip()
        if answer:
            raise CtlError(f"HAProxy refused 'set server {self.backend}/{name} state {state}': {answer}")


# ---------------------------------------------------------------- commands
def _missing(api: RuntimeApi, name: str) -> int:
    print(f"{api.backend}/{name}: not in this HAProxy, nothing to do")
    return 0


def in_rotation(server: Server) -> bool:
    """The server gets new requests: ready, and its health check says UP."""
    return server.admin == "ready" and server.up


def cmd_set_state(api: RuntimeApi, args: argparse.Namespace) -> int:
    servers = api.servers()
    server = servers.get(args.server)
    if server is None:
        api.server(args.server, args.missing_ok)  # raises with the known servers unless --missing-ok
        return _missing(api, args.server)
    if server.admin == args.command:
        print(f"{api.backend}/{server.name}: already {args.command}")
        return 0
    others = [s for s in servers.values() if s.name != server.name]
    if getattr(args, "keep_last", False) and in_rotation(server) and not any(in_rotation(s) for s in others):
        # Draining the only server that serves turns every request into a 503;
        # a graceful reload of a server left in rotation loses none.
        states = ", ".join(f"{s.name} {s.admin}/{s.status}" for s in others) or "none"
        print(f"{api.backend}/{server.name}: the only server in rotation (others: {states}): {KEPT}")
        return 0
    api.set_state(server.name, args.command)
    # "->" marks a change (the app playbook's changed_when reads it).
    print(f"{api.backend}/{server.name}: {server.admin} -> {args.command}")
    return 0


def cmd_drain(api: RuntimeApi, args: argparse.Namespace) -> int:
    code = cmd_set_state(api, args)
    if code or not args.wait:
        return code
    return cmd_wait_drained(api, args)


def cmd_ready(api: RuntimeApi, args: argparse.Namespace) -> int:
    code = cmd_set_state(api, args)
    if code or not args.wait:
        return code
    return cmd_wait_up(api, args)


def _wait(api: RuntimeApi, args: argparse.Namespace, what: str, done) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        server = api.server(args.server, args.missing_ok)
        if server is None:
            return _missing(api, args.server)
        if done(server):
            print(f"{api.backend}/{server.name}: {what} ({server.describe()})")
            return 0
        if time.monotonic() >= deadline:
            hint = f"; it is in {server.admin}: 'ssai-haproxy ready {server.name}' first" \
                if what == "UP" and server.admin != "ready" else ""
            raise CtlError(f"timed out after {args.timeout:g}s waiting for {api.backend}/{server.name} "
                           f"to be {what} (last: {server.describe()}){hint}", EXIT_TIMEOUT)
        time.sleep(args.interval)


def cmd_wait_drained(api: RuntimeApi, args: argparse.Namespace) -> int:
    server = api.server(args.server, args.missing_ok)
    if server is None:
        return _missing(api, args.server)
    if server.admin == "ready":
        # Not drained (drain --keep-last kept it): its sessions never reach 0.
        print(f"{api.backend}/{server.name}: in rotation, not drained: nothing to wait for ({server.describe()})")
        return 0
    return _wait(api, args, "drained (0 sessions)", lambda s: s.sessions == 0)


def cmd_wait_up(api: RuntimeApi, args: argparse.Namespace) -> int:
    return _wait(api, args, "UP", lambda s: s.up)


def cmd_api(api: RuntimeApi, args: argparse.Namespace) -> int:
    sys.stdout.write(api.command(" ".join(args.words)))
    return 0


def cmd_status(api: RuntimeApi, args: argparse.Namespace) -> int:
    if args.watch:
        return _watch_status(api, args.watch)
    servers = api.servers()
    if args.json:
        print(json.dumps({"backend": api.backend, "socket": api.socket_path,
                          "servers": [asdict(s) for s in servers.values()]}, indent=2))
        return 0
    print(f"backend {api.backend} ({api.socket_path})")
    print(f"{'server':12} {'admin':6} {'status':10} {'check':10} {'sessions':>8}")
    for s in servers.values():
        print(f"{s.name:12} {s.admin:6} {s.status:10} {s.check or '-':10} {s.sessions:>8}")
    return 0


def _stdin_is_a_pipe() -> bool:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _watch_status(api: RuntimeApi, interval: float) -> int:
    """One compact JSON line per read, every `interval` seconds, until interrupted, stdout
    closes, or (when standard input is a pipe or socket: `docker exec -i`, ssh) standard
    input ends: one process that watches a rollout (a new process per read costs more
    than the read). A reader that goes away without closing our stdout (docker exec's
    client killed) closes our stdin, so the watch does not outlive it."""
    watch_stdin = _stdin_is_a_pipe()
    try:
        while True:
            servers = api.servers()
            print(json.dumps({"time": time.time(), "servers": [asdict(s) for s in servers.values()]},
                             separators=(",", ":")), flush=True)
            if not watch_stdin:
                time.sleep(interval)
            elif select.select([sys.stdin], [], [], interval)[0] and not os.read(sys.stdin.fileno(), 4096):
                return 0  # end of standard input: the reader is gone
    except (BrokenPipeError, KeyboardInterrupt):
        # the reader went away: done (stdout points at /dev/null so the exit flush stays quiet)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# ---------------------------------------------------------------- command line
def _seconds(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssai-haproxy", description="Drain, re-enable and watch the app servers of this host's HAProxy.",
        epilog="Exit codes: 0 done, 1 failed, 2 usage, 3 no runtime API (HAProxy not running), 4 timed out.")
    parser.add_argument("--config", default=CONFIG, help=f"JSON with 'backend' and 'socket' (default: {CONFIG})")
    parser.add_argument("--backend", help="backend name (default: from --config)")
    parser.add_argument("--socket", help="admin socket of the runtime API (default: from --config)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("server", help="server name in the backend (the app host's inventory name)")
    server.add_argument("--missing-ok", action="store_true",
                        help="a server this HAProxy does not know is nothing to do (exit 0)")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--timeout", type=_seconds, default=60.0, help="seconds to wait at most (default: 60)")
    # Each check is two runtime API commands on the local socket: cheap enough to poll often.
    waiting.add_argument("--interval", type=_seconds, default=0.2, help="seconds between checks (default: 0.2)")

    status = sub.add_parser("status", help="the backend's servers: admin state, status, check, current sessions")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", type=_seconds, metavar="SECONDS",
                        help="read again every SECONDS, one JSON line each (a timestamp and the servers), "
                             "until interrupted")
    status.set_defaults(func=cmd_status)
    drain = sub.add_parser("drain", parents=[server, waiting], help="no new sessions for the server (state drain)")
    drain.add_argument("--keep-last", action="store_true",
                       help=f"leave the server in rotation when no other server is ready and UP; prints '{KEPT}'")
    drain.add_argument("--wait", action="store_true",
                       help="then wait until it has 0 current sessions (as wait-drained; --timeout, --interval)")
    drain.set_defaults(func=cmd_drain)
    ready = sub.add_parser("ready", parents=[server, waiting],
                           help="back into rotation, out of drain or maintenance (state ready)")
    ready.add_argument("--wait", action="store_true",
                       help="then wait until the health check reports it UP (as wait-up; --timeout, --interval)")
    ready.set_defaults(func=cmd_ready)
    sub.add_parser("maint", parents=[server],
                   help="out of rotation and health checks (state maint)").set_defaults(func=cmd_set_state)
    sub.add_parser("wait-drained", parents=[server, waiting],
                   help="wait until the server has 0 current sessions").set_defaults(func=cmd_wait_drained)
    sub.add_parser("wait-up", parents=[server, waiting],
                   help="wait until the health check reports the server UP").set_defaults(func=cmd_wait_up)
    raw = sub.add_parser("api", help="send one runtime API command (e.g. 'clear table st_login'), print the answer")
    raw.add_argument("words", nargs="+", metavar="WORD", help="the command, e.g.: show servers state")
    raw.set_defaults(func=cmd_api)
    return parser


def load_api(args: argparse.Namespace) -> RuntimeApi:
    config = {}
    if not (args.backend and args.socket):
        try:
            with open(args.config, encoding="utf-8") as fh:
                config = json.load(fh)
        except FileNotFoundError as exc:
            raise CtlError(f"{args.config} is missing (roles/haproxy writes it): pass --backend and --socket",
                           EXIT_USAGE) from exc
        except (OSError, ValueError) as exc:
            raise CtlError(f"{args.config}: {exc}", EXIT_USAGE) from exc
    backend, sock = args.backend or config.get("backend"), args.socket or config.get("socket")
    if not backend or not sock:
        raise CtlError(f"{args.config} must name 'backend' and 'socket'", EXIT_USAGE)
    return RuntimeApi(sock, backend)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(load_api(args), args)
    except CtlError as exc:
        print(f"ssai-haproxy: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
