#!/usr/bin/python3
"""Write fail2ban's ban counters for node_exporter's textfile collector.

Usage: fail2ban-metrics <textfile directory>

Run every minute by fail2ban-metrics.timer (roles/fail2ban). For every jail of
`fail2ban-client status`:
  fail2ban_banned_total{jail}  "Total banned" (since fail2ban started: it
                               restarts at 0 with fail2ban, a counter reset)
  fail2ban_banned{jail}        "Currently banned"
and fail2ban_up (1 if fail2ban-client answered). The file is written to a
temporary name and renamed, so node_exporter never reads half of it.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

OUTPUT_NAME = "fail2ban.prom"
FAIL2BAN_CLIENT = "/usr/bin/fail2ban-client"
TIMEOUT = 20


def client(*args: str) -> str:
    # Fixed program; the arguments are "status" and jail names fail2ban itself listed.
    return subprocess.run([FAIL2BAN_CLIENT, *args], check=True, capture_output=True, text=True,  # noqa: S603
                          timeout=TIMEOUT).stdout


def jails(status: str) -> list[str]:
    """Jail names from `fail2ban-client status` ("`- Jail list:\tsshd, recidive")."""
    match = re.search(r"Jail list:\s*(.*)$", status, re.MULTILINE)
    if not match:
        raise ValueError("no jail list in fail2ban-client status")
    return [name.strip() for name in match.group(1).split(",") if name.strip()]


def jail_counts(status: str) -> tuple[int, int]:
    """(total banned, currently banned) from `fail2ban-client status <jail>`."""
    total = re.search(r"Total banned:\s*(\d+)", status)
    current = re.search(r"Currently banned:\s*(\d+)", status)
    if not total or not current:
        raise ValueError("no ban counts in fail2ban-client status <jail>")
    return int(total.group(1)), int(current.group(1))


def label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def collect() -> list[str]:
    lines = [
        "# HELP fail2ban_up 1 if fail2ban-client answered.",
        "# TYPE fail2ban_up gauge",
    ]
    try:
        counts = {name: jail_counts(client("status", name)) for name in jails(client("status"))}
    except (OSError, subprocess.SubprocessError, ValueError):
        return [*lines, "fail2ban_up 0"]
    lines += [
        "fail2ban_up 1",
        "# HELP fail2ban_banned_total Addresses banned since fail2ban started, by jail.",
        "# TYPE fail2ban_banned_total counter",
    ]
    lines += [f'fail2ban_banned_total{{jail="{label(name)}"}} {total}' for name, (total, _) in sorted(counts.items())]
    lines += [
        "# HELP fail2ban_banned Addresses banned now, by jail.",
        "# TYPE fail2ban_banned gauge",
    ]
    lines += [f'fail2ban_banned{{jail="{label(name)}"}} {current}' for name, (_, current) in sorted(counts.items())]
    return lines


def write_atomically(directory: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".fail2ban.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, OUTPUT_NAME))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1]:
        print(f"usage: {argv[0]} <textfile directory>", file=sys.stderr)
        return 2
    write_atomically(argv[1], "\n".join(collect()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
