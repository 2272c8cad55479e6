#!/usr/bin/python
"""Ansible module: the deploy lock and the audit record of an app host."""

DOCUMENTATION = r"""
---
module: socialsphere_deploy
short_description: Take, release or break the deploy lock of an app host; append to its deploy log
description:
  - The bookkeeping of a rollout on one app host (playbooks/app.yml, app-prune.yml,
    app-unlock.yml; docs/runbooks/release.md).
  - C(take) creates the lock file atomically (a complete file is linked into place, so
    two runs that race cannot both take it and a reader never sees half a file) with
    the run's description (O(run)). A lock of the same run (O(run.id)) is already
    taken. A lock of another run is not touched and reported in RV(holder) and
    RV(message), unless O(force) breaks it.
  - C(release) removes the lock only when this run holds it; C(break) removes whatever
    lock there is. A broken lock is recorded in O(log) with its holder.
  - C(record) appends one JSON line to O(log) (created root-owned, mode 0640, in a
    directory of mode 0750): the time in UTC, O(host), the run (id, who, command, kind,
    batch) and the fields of O(record).
  - C(take) also reports which release C(current) and C(previous) of O(root) point to
    (the audit record's "from", and what a failed activation goes back to).
options:
  action:
    description: What to do.
    type: str
    choices: [take, release, break, record]
    required: true
  lock:
    description: The lock file (C(take), C(release), C(break)). Its directory is created if missing.
    type: path
  log:
    description:
      - The deploy log, one JSON object per line (C(record); C(take) with O(force) and C(break) record the broken
        lock).
    type: path
  root:
    description: C(take) reads the releases C(<root>/current) and C(<root>/previous) point to.
    type: path
  host:
    description: The host's inventory name, written into the lock and the records.
    type: str
    default: ""
  force:
    description: C(take) breaks a lock held by another run (recorded in O(log)).
    type: bool
    default: false
  run:
    description: The run; its fields are written into the lock and every record.
    type: dict
    required: true
    suboptions:
      id:
        description: Unique id of the run (a lock with this id is this run's own).
        type: str
        required: true
      who:
        description: Who runs it (user@control node).
        type: str
        default: ""
      since:
        description: When the run started (UTC, ISO 8601).
        type: str
        default: ""
      command:
        description: The command that started it.
        type: str
        default: ""
      kind:
        description: deploy, rollback, prune, unlock.
        type: str
        default: deploy
      version:
        description: The release the run deploys.
        type: str
        default: ""
      batch:
        description: Its batch size.
        type: str
        default: ""
  record:
    description: C(record) only, the fields of the line (from, to, result, message, ...).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
"""

EXAMPLES = r"""
- name: Take the deploy lock
  socialsphere_deploy:
    action: take
    lock: /srv/socialsphere/.deploy-lock
    root: /srv/socialsphere
    host: "{{ inventory_hostname }}"
    run: {id: 20260101T100000Z-1a2b3c4d, who: alice@ops1, since: "2026-01-01T10:00:00Z", command: fab deploy}
  register: lock

- name: Record the result
  socialsphere_deploy:
    action: record
    log: /var/log/socialsphere/deploys.log
    run: "{{ run }}"
    record: {from: 1.0.0+gabc, to: 1.0.1+gdef, result: ok}
"""

RETURN = r"""
taken:
  description: C(take) - this run holds the lock now (or would, in check mode).
  returned: always
  type: bool
holder:
  description: The lock as found, when another run held it (C(take), C(release)) or when it was broken (C(break)).
  returned: always
  type: dict
broken:
  description: The lock this call broke (C(take) with O(force), C(break)), else null.
  returned: always
  type: dict
released:
  description: C(release) - this run's lock was removed.
  returned: always
  type: bool
message:
  description: Who holds the lock and since when, when C(take) did not get it.
  returned: always
  type: str
current:
  description: C(take) - the release C(current) points to ("" if none).
  returned: always
  type: str
previous:
  description: C(take) - the release C(previous) points to ("" if none).
  returned: always
  type: str
entry:
  description: C(record) - the line written (or that would be).
  returned: always
  type: dict
"""

import json
import os
import socket
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

RUN_FIELDS = ("id", "who", "since", "command", "kind", "version", "batch")


def _utc(seconds=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _release_of(link):
    try:
        return os.path.basename(os.readlink(link).rstrip("/"))
    except OSError:
        return ""


def read_lock(path):
    """The lock's content, None without a lock; an unreadable lock still names its file's age."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and data.get("id"):
            return data
    except ValueError:
        pass
    try:
        since = _utc(os.stat(path).st_mtime)
    except OSError:
        since = "?"
    return {"id": "?", "who": "unknown (unreadable lock file)", "since": since, "command": "?", "version": "?"}


def describe(holder):
    return (f"held by {holder.get('who') or '?'} since {holder.get('since') or '?'} "
            f"({holder.get('kind') or 'deploy'} of {holder.get('version') or '-'}: {holder.get('command') or '?'}; "
            f"run {holder.get('id')})")


def _mkdirs(path, mode):
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)


def _write_tmp(directory, content):
    fd, tmp = tempfile.mkstemp(prefix=".deploy-lock.", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    return tmp


def append_record(log, run, host, fields):
    """Append one JSON line to the deploy log; return it."""
    entry = {"time": _utc(), "host": host, "who": run.get("who", ""), "command": run.get("command", ""),
             "kind": run.get("kind", ""), "batch": run.get("batch", ""), "run": run.get("id", "")}
    entry.update(fields)
    _mkdirs(os.path.dirname(log), 0o750)
    line = (json.dumps(entry, sort_keys=False) + "\n").encode("utf-8")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of concurrent writers never interleave
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def take(module, p, result):
    lock, run = p["lock"], p["run"]
    if p["root"]:
        result["current"] = _release_of(os.path.join(p["root"], "current"))
        result["previous"] = _release_of(os.path.join(p["root"], "previous"))
    holder = read_lock(lock)
    if holder is not None and holder.get("id") == run["id"]:
        result["taken"] = True
        return
    if holder is not None and not p["force"]:
        result["holder"] = holder
        result["message"] = f"{lock} is {describe(holder)}"
        return
    result["taken"] = result["changed"] = True
    result["broken"] = holder
    if module.check_mode:
        return
    directory = os.path.dirname(lock)
    _mkdirs(directory, 0o755)
    content = json.dumps(dict({k: run.get(k, "") for k in RUN_FIELDS}, host=p["host"], taken=_utc()), indent=1) + "\n"
    tmp = _write_tmp(directory, content)
    try:
        if holder is None:
            try:
                os.link(tmp, lock)  # fails when the lock exists: the atomic test-and-set
            except FileExistsError:
                other = read_lock(lock) or {"id": "?"}
                result.update(taken=False, changed=False, broken=None, holder=other,
                              message=f"{lock} is {describe(other)}")
                return
        else:
            os.replace(tmp, lock)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if holder is not None and p["log"]:
        append_record(p["log"], run, p["host"], {"result": "lock-broken", "holder": holder})


def release(module, p, result):
    holder = read_lock(p["lock"])
    if holder is None:
        return
    if holder.get("id") != p["run"]["id"]:
        result["holder"] = holder  # another run broke ours and took it: not ours to remove
        return
    result["released"] = result["changed"] = True
    if not module.check_mode:
        os.unlink(p["lock"])


def break_lock(module, p, result):
    holder = read_lock(p["lock"])
    if holder is None:
        return
    result["holder"] = result["broken"] = holder
    result["changed"] = True
    if module.check_mode:
        return
    os.unlink(p["lock"])
    if p["log"]:
        append_record(p["log"], p["run"], p["host"], {"result": "lock-broken", "holder": holder})


def main():
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["take", "release", "break", "record"]},
            "lock": {"type": "path"},
            "log": {"type": "path"},
            "root": {"type": "path"},
            "host": {"type": "str", "default": ""},
            "force": {"type": "bool", "default": False},
            "run": {
                "type": "dict", "required": True,
                "options": {
                    "id": {"type": "str", "required": True},
                    "who": {"type": "str", "default": ""},
                    "since": {"type": "str", "default": ""},
                    "command": {"type": "str", "default": ""},
                    "kind": {"type": "str", "default": "deploy"},
                    "version": {"type": "str", "default": ""},
                    "batch": {"type": "str", "default": ""},
                },
            },
            "record": {"type": "dict", "default": {}},
        },
        required_if=[
            ("action", "take", ["lock"]),
            ("action", "release", ["lock"]),
            ("action", "break", ["lock"]),
            ("action", "record", ["log"]),
        ],
        supports_check_mode=True,
    )
    p = dict(module.params)
    p["host"] = p["host"] or socket.gethostname()
    result = {"changed": False, "taken": False, "released": False, "holder": None, "broken": None,
              "message": "", "current": "", "previous": "", "entry": {}}
    action = p["action"]
    if action == "take":
        take(module, p, result)
    elif action == "release":
        release(module, p, result)
    elif action == "break":
        break_lock(module, p, result)
    else:
        result["changed"] = True
        if module.check_mode:
            result["entry"] = dict(p["record"], host=p["host"])
        else:
            result["entry"] = append_record(p["log"], p["run"], p["host"], p["record"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
