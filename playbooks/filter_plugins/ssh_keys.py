"""Jinja filters of playbooks/rotate-secrets.yml -e rotate=deploy_key: SSH public keys
compared by their key (type and base64 blob), never by comment or options, and named
by their SHA256 fingerprint (as `ssh-keygen -l` prints it)."""
import base64
import binascii
import hashlib
import re

# Key types OpenSSH accepts in authorized_keys (certificates and security keys included).
_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)"
                       r"|sk-\S+@openssh\.com|\S+-cert-v01@openssh\.com)$")


def _parse_line(line):
    """(type, blob) of one authorized_keys or .pub line, None for a blank or comment
    line; raises ValueError for a line that holds no valid key."""
    line = str(line).strip()
    if not line or line.startswith("#"):
        return None
    tokens = line.split()
    for i, token in enumerate(tokens[:-1]):  # options may come first: the key type marks the key
        if _KEY_TYPE.match(token):
            blob = tokens[i + 1]
            try:
                raw = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                break
            # the blob starts with the key type itself (RFC 4253 string)
            if len(raw) < 4 or raw[4:4 + int.from_bytes(raw[:4], "big")].decode(errors="replace") != token:
                break
            return token, blob
    raise ValueError("not an SSH public key")


def _fingerprint(blob):
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def ssai_ssh_keys(value):
    """Describe a list of public keys (or the text of an authorized_keys file):
    {"pubkeys": ["<type> <blob>", ...] in order, without duplicates, "fingerprints":
    {"<type> <blob>": "SHA256:..."}, "labels": {"<type> <blob>": "<fingerprint> (<comment>)"},
    "invalid": [1-based positions of entries that are not keys], "duplicates": [positions]}."""
    if value is None:
        value = []
    lines = value.splitlines() if isinstance(value, str) else list(value)
    result = {"pubkeys": [], "fingerprints": {}, "labels": {}, "invalid": [], "duplicates": []}
    for position, line in enumerate(lines, 1):
        try:
            parsed = _parse_line(line)
        except ValueError:
            result["invalid"].append(position)
            continue
        if parsed is None:
            if not isinstance(value, str):  # a list entry must be a key
                result["invalid"].append(position)
            continue
        key = " ".join(parsed)
        if key in result["fingerprints"]:
            result["duplicates"].append(position)
            continue
        tokens = str(line).split()
        comment = " ".join(tokens[tokens.index(parsed[1]) + 1:])
        fingerprint = _fingerprint(parsed[1])
        result["pubkeys"].append(key)
        result["fingerprints"][key] = fingerprint
        result["labels"][key] = f"{fingerprint} ({comment})" if comment else fingerprint
    return result


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"ssai_ssh_keys": ssai_ssh_keys}
