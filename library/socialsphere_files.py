#!/usr/bin/python
"""Ansible module: write several small files and directories in one call."""

DOCUMENTATION = r"""
---
module: socialsphere_files
short_description: Write several small files and directories in one module run
description:
  - Brings each entry of O(files) to its state (a file with the given content, a
    directory, or nothing) with its owner, group and mode, in the order given.
  - One module run for the whole list. ansible.builtin.copy and template run two
    modules per file even when nothing changes (a stat, then the file module for
    the attributes), about a second of CPU on the host each; a role that writes
    ten small files on every host paid that twenty times per host and run.
  - Content is written to a temporary file in the same directory and renamed over
    the old one (atomic), so a reader never sees half a file.
  - For files that must be validated before they are installed (sshd_config,
    sudoers, haproxy.cfg), use ansible.builtin.template with C(validate).
options:
  files:
    description: The entries, applied in order (create a directory before the files in it).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: C(file) writes O(files[].content); C(directory) creates the directory; C(absent) removes a file.
        type: str
        choices: [file, directory, absent]
        default: file
      content:
        description: The whole content of the file (state C(file)).
        type: str
      owner:
        description: Owner name.
        type: str
        default: root
      group:
        description: Group name.
        type: str
        default: root
      mode:
        description: Octal mode as a string, for example C("0644"); required unless state is C(absent).
        type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Write the login banners
  socialsphere_files:
    files:
      - {path: /etc/issue, content: "{{ banner }}", mode: "0644"}
      - {path: /etc/issue.net, content: "{{ banner }}", mode: "0644"}
      - {path: /etc/app/conf.d, state: directory, mode: "0755"}
      - path: /etc/app/conf.d/10-site.conf
        content: "{{ lookup('template', 'site.conf.j2') }}"
        mode: "0640"
        group: app
"""

RETURN = r"""
changed_paths:
  description: The paths whose content, existence or attributes changed (or would, in check mode).
  returned: always
  type: list
  elements: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write(module, path, data):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".socialsphere_files.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _apply(module, entry, diffs):
    """Bring one entry to its state; return True when something changed."""
    path = entry["path"]
    state = entry["state"]
    changed = False
    if state == "absent":
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                module.fail_json(msg=f"{path} is a directory; state absent removes files only")
            diffs.append({"before_header": path, "after_header": path, "before": "present\n", "after": "absent\n"})
            if not module.check_mode:
                os.unlink(path)
            changed = True
        return changed

    if state == "directory":
        if os.path.lexists(path) and not os.path.isdir(path):
            module.fail_json(msg=f"{path} exists and is not a directory")
        if not os.path.isdir(path):
            diffs.append({"before_header": path, "after_header": path, "before": "absent\n", "after": "directory\n"})
            changed = True
            if module.check_mode:
                return changed
            os.mkdir(path, 0o700)
    else:
        if entry["content"] is None:
            module.fail_json(msg=f"{path}: state file needs content")
        if os.path.isdir(path):
            module.fail_json(msg=f"{path} is a directory")
        wanted = to_bytes(entry["content"], errors="surrogate_or_strict")
        current = _read(path)
        if current != wanted:
            diffs.append({
                "before_header": path, "after_header": path,
                "before": "" if current is None else to_text(current, errors="surrogate_or_replace"),
                "after": entry["content"],
            })
            changed = True
            if module.check_mode and current is None:
                return changed  # no file yet to compare attributes with
            if not module.check_mode:
                _write(module, path, wanted)

    file_args = module.load_file_common_arguments({
        "path": path, "owner": entry["owner"], "group": entry["group"], "mode": entry["mode"],
    })
    return module.set_fs_attributes_if_different(file_args, changed)


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "choices": ["file", "directory", "absent"], "default": "file"},
                    "content": {"type": "str", "no_log": False},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "mode": {"type": "str"},
                },
            },
        },
        supports_check_mode=True,
    )
    changed_paths = []
    diffs = []
    for entry in module.params["files"]:
        if not os.path.isabs(entry["path"]):
            module.fail_json(msg=f"{entry['path']}: path must be absolute")
        if entry["state"] != "absent" and not entry["mode"]:
            module.fail_json(msg=f"{entry['path']}: mode is required")
        if _apply(module, entry, diffs):
            changed_paths.append(entry["path"])
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
