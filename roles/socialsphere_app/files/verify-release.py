#!/usr/bin/python3
"""Check an unpacked release against its manifest.json (run by roles/socialsphere_app
on the app host, ansible.builtin.script, before the release's virtualenv is built).

Usage: verify-release.py <release directory> <expected version>

Exit 0: the manifest names the expected version and every file it lists is there with
its sha256. Exit 1: what differs, one line each (at most 20 files named).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

MAX_NAMED = 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def problems(root: Path, version: str) -> list[str]:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"{root}/manifest.json: {exc}"]
    found = []
    if manifest.get("version") != version:
        found.append(f"manifest version {manifest.get('version')} != {version}")
    missing, bad = [], []
    for name, meta in sorted(manifest.get("files", {}).items()):
        path = root / name
        if not path.is_file():
            missing.append(name)
        elif sha256(path) != meta["sha256"]:
            bad.append(name)
    for what, names in (("missing", missing), ("checksum mismatch", bad)):
        if names:
            more = f" (and {len(names) - MAX_NAMED} more)" if len(names) > MAX_NAMED else ""
            found.append(f"{what}: {', '.join(names[:MAX_NAMED])}{more}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: verify-release.py <release directory> <expected version>", file=sys.stderr)
        return 2
    found = problems(Path(argv[0]), argv[1])
    for line in found:
        print(f"verify-release: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
