"""Jinja filters of playbooks/rotate-secrets.yml."""
import json
from collections.abc import Mapping

# The app refuses shorter HS256 secrets (app/socialsphere/config.py, _parse_jwt_keys).
MIN_SECRET_LENGTH = 32


def ssai_jwt_key_ids(value):
    """Describe a JWT key set (socialsphere_app_jwt_keys: a JSON object {kid: secret} as a
    string, or a mapping) without its secrets: {"kids": sorted key ids, "short": key ids
    whose secret is not a string of at least 32 characters, "error": why the value is not
    a key set, or ""}. The result can be printed; the value itself never is."""
    result = {"kids": [], "short": [], "error": ""}
    if value is None or (isinstance(value, str) and not value.strip()):
        result["error"] = "is not set (group_vars/app/vars.yml maps it from the vault)"
        return result
    if isinstance(value, Mapping):
        keys = dict(value)
    else:
        try:
            keys = json.loads(str(value or ""))
        except ValueError:  # the exception text would quote the value
            result["error"] = 'is not a JSON object {"<kid>": "<secret>"}'
            return result
    if not isinstance(keys, dict) or not keys:
        result["error"] = 'is not a non-empty JSON object {"<kid>": "<secret>"}'
        return result
    result["kids"] = sorted(str(kid) for kid in keys)
    result["short"] = sorted(str(kid) for kid, secret in keys.items()
                             if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH)
    return result


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"ssai_jwt_key_ids": ssai_jwt_key_ids}
