#!/usr/bin/env python3
"""Build the static frontend: content-hashed assets, rewritten pages, manifest.

Reads ``app/frontend/`` and writes

* ``app/socialsphere/static/``            hashed assets + ``manifest.json``
* ``app/socialsphere/templates_static/``  the HTML pages (stable names)

Both output directories are owned by this script: files it did not produce
there are removed (stale hashed names of an earlier build). The build is
deterministic (sorted traversal, no timestamps, LF line endings) and idempotent
(unchanged files are not rewritten). Standard library only.

The output is not committed (``app/README.md``, "Frontend build"): scripts/build-release
builds it into the release, and in a source checkout the tests and the development
server build it in place (``socialsphere.web.build_from_sources``).

Usage (from ``app/``)::

    python scripts/build_assets.py             # build in place
    python scripts/build_assets.py --check     # exit 1 if the build in place is stale
    python scripts/build_assets.py --validate  # build in memory only: exit 2 on a problem in the sources

Source references that get rewritten:

* HTML: ``src``/``href`` values ``/static/<logical path>``;
* JS modules: relative specifiers in ``import ... from "./x.js"``,
  ``import "./x.js"``, ``export ... from "./x.js"`` and ``import("./x.js")``;
* CSS: ``url(...)`` with a relative path or ``/static/<logical path>``.

HTML pages may include partials with ``<!--#include partials/header.html -->``
(path relative to ``frontend/pages/``). Pages are checked for CSP
``default-src 'self'`` compatibility (no inline scripts, styles, event-handler
attributes, ``javascript:`` URLs or off-site resources); a violation fails the
build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SRC = APP_DIR / "frontend"
DEFAULT_STATIC_OUT = APP_DIR / "socialsphere" / "static"
DEFAULT_PAGES_OUT = APP_DIR / "socialsphere" / "templates_static"

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
HASH_LENGTH = 8
TEXT_SUFFIXES = {".js", ".mjs", ".css", ".svg", ".html", ".json", ".txt", ".webmanifest"}
STATIC_PREFIX = "/static/"

INCLUDE_RE = re.compile(r"<!--#include\s+([A-Za-z0-9_./-]+)\s*-->")
HTML_REF_RE = re.compile(r"""(\b(?:src|href)=)(["'])/static/([^"'?#]+)\2""")
JS_IMPORT_RE = re.compile(r"""((?:\bimport|\bexport)\b[^;'"()]*?\bfrom\s*|\bimport\s*\(?\s*)(["'])(\.{1,2}/[^"']+)\2""")
MODULE_SCRIPT_RE = re.compile(r"""^([ \t]*)(<script type="module" src="/static/([^"]+)"></script>)""", re.M)
CSS_URL_RE = re.compile(r"""url\(\s*(["']?)([^"')]+)\1\s*\)""")

# CSP ``default-src 'self'`` checks for the built pages.
SCRIPT_TAG_RE = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.I | re.S)
FORBIDDEN_HTML = [
    (re.compile(r"<style\b", re.I), "inline <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler attribute"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"""\b(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", re.I), "off-site resource"),
]
FORBIDDEN_JS = [
    (re.compile(r"\beval\s*\("), "eval()"),
    (re.compile(r"\bnew\s+Function\s*\("), "new Function()"),
    (re.compile(r"\.innerHTML\s*="), "innerHTML assignment (build DOM nodes instead)"),
    (re.compile(r"""\bsetAttribute\(\s*["']style["']"""), "style attribute"),
    (re.compile(r"\blocalStorage\b|\bsessionStorage\b"), "web storage (tokens stay in memory)"),
]


class BuildError(Exception):
    """A problem in the frontend sources; the message says where."""


@dataclass
class BuildResult:
    static: dict[str, bytes] = field(default_factory=dict)  # relpath -> content
    pages: dict[str, bytes] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)  # logical -> hashed


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hashed_name(logical: str, data: bytes) -> str:
    stem, dot, ext = logical.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = logical, ""
    digest = _sha256(data)[:HASH_LENGTH]
    return f"{stem}.{digest}.{ext}" if ext else f"{stem}.{digest}"


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix.lower() in TEXT_SUFFIXES:
        data = data.replace(b"\r\n", b"\n")
    return data


def _files(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


class _Builder:
    def __init__(self, src: Path) -> None:
        self.src = src
        self.assets_dir = src / "assets"
        self.pages_dir = src / "pages"
        self.sources = {name: _read(self.assets_dir / name) for name in _files(self.assets_dir)}
        self.hashed: dict[str, str] = {}
        self.deps: dict[str, set[str]] = {}  # module -> modules it imports
        self.output: dict[str, bytes] = {}
        self._visiting: list[str] = []

    # -- assets --------------------------------------------------------------
    def asset(self, logical: str, referrer: str) -> str:
        """Build *logical* (and what it references); return its hashed name."""
        if logical in self.hashed:
            return self.hashed[logical]
        if logical not in self.sources:
            raise BuildError(f"{referrer}: reference to missing asset {logical!r}")
        if logical in self._visiting:
            cycle = " -> ".join(self._visiting + [logical])
            raise BuildError(f"reference cycle: {cycle} (hashing needs an acyclic graph)")
        self._visiting.append(logical)
        try:
            data = self.sources[logical]
            suffix = posixpath.splitext(logical)[1].lower()
            if suffix in (".js", ".mjs"):
                data = self._rewrite_js(logical, data)
            elif suffix == ".css":
                data = self._rewrite_css(logical, data)
        finally:
            self._visiting.pop()
        name = _hashed_name(logical, data)
        self.hashed[logical] = name
        self.output[name] = data
        return name

    def _resolve(self, base: str, ref: str, referrer: str) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(base), ref))
        if target.startswith("../") or target == "..":
            raise BuildError(f"{referrer}: {ref!r} points outside frontend/assets")
        return target

    def _rewrite_js(self, logical: str, data: bytes) -> bytes:
        text = data.decode("utf-8")
        for pattern, what in FORBIDDEN_JS:
            if pattern.search(text):
                raise BuildError(f"assets/{logical}: {what} is not allowed")

        def repl(m: re.Match[str]) -> str:
            prefix, quote, spec = m.groups()
            target = self._resolve(logical, spec, f"assets/{logical}")
            hashed = self.asset(target, f"assets/{logical}")
            self.deps.setdefault(logical, set()).add(target)
            rel = posixpath.relpath(hashed, posixpath.dirname(logical) or ".")
            if not rel.startswith("../"):
                rel = "./" + rel
            return f"{prefix}{quote}{rel}{quote}"

        return JS_IMPORT_RE.sub(repl, text).encode("utf-8")

    def _rewrite_css(self, logical: str, data: bytes) -> bytes:
        text = data.decode("utf-8")

        def repl(m: re.Match[str]) -> str:
            quote, ref = m.groups()
            ref = ref.strip()
            if ref.startswith(("data:", "#")):
                return m.group(0)
            if re.match(r"^(?:[a-z]+:)?//", ref, re.I):
                raise BuildError(f"assets/{logical}: off-site url({ref}) is not allowed")
            ref_path, _, tail = ref.partition("?")
            if ref_path.startswith(STATIC_PREFIX):
                hashed = self.asset(ref_path[len(STATIC_PREFIX) :], f"assets/{logical}")
                new = STATIC_PREFIX + hashed
            else:
                target = self._resolve(logical, ref_path, f"assets/{logical}")
                hashed = self.asset(target, f"assets/{logical}")
                new = posixpath.relpath(hashed, posixpath.dirname(logical) or ".")
            if tail:
                new += "?" + tail
            return f"url({quote}{new}{quote})"

        return CSS_URL_RE.sub(repl, text).encode("utf-8")

    # -- pages ---------------------------------------------------------------
    def page(self, name: str) -> bytes:
        text = _read(self.pages_dir / name).decode("utf-8")
        text = self._includes(text, name, depth=0)
        self._check_csp(text, f"pages/{name}")

        def repl(m: re.Match[str]) -> str:
            attr, quote, logical = m.groups()
            hashed = self.asset(logical, f"pages/{name}")
            return f"{attr}{quote}{STATIC_PREFIX}{hashed}{quote}"

        text = HTML_REF_RE.sub(repl, self._modulepreload(text, name))
        return text.encode("utf-8")

    def _modulepreload(self, text: str, name: str) -> str:
        """After each module script, preload the modules it imports (transitively)."""

        def repl(m: re.Match[str]) -> str:
            indent, tag, logical = m.groups()
            self.asset(logical, f"pages/{name}")  # fills self.deps
            closure: set[str] = set()
            todo = [logical]
            while todo:
                for dep in self.deps.get(todo.pop(), ()):
                    if dep not in closure:
                        closure.add(dep)
                        todo.append(dep)
            links = "".join(
                f'\n{indent}<link rel="modulepreload" href="{STATIC_PREFIX}{dep}">' for dep in sorted(closure)
            )
            return f"{indent}{tag}{links}"

        return MODULE_SCRIPT_RE.sub(repl, text)

    def _includes(self, text: str, name: str, depth: int) -> str:
        if depth > 5:
            raise BuildError(f"pages/{name}: includes nested too deeply")

        def repl(m: re.Match[str]) -> str:
            rel = posixpath.normpath(m.group(1))
            path = self.pages_dir / rel
            if rel.startswith("..") or not path.is_file():
                raise BuildError(f"pages/{name}: missing include {m.group(1)!r}")
            inner = _read(path).decode("utf-8").rstrip("\n")
            return self._includes(inner, rel, depth + 1)

        return INCLUDE_RE.sub(repl, text)

    @staticmethod
    def _check_csp(text: str, where: str) -> None:
        for m in SCRIPT_TAG_RE.finditer(text):
            attrs, body = m.groups()
            if body.strip() or not re.search(r"\ssrc\s*=", attrs):
                raise BuildError(f"{where}: inline <script> is not allowed (CSP)")
        for pattern, what in FORBIDDEN_HTML:
            hit = pattern.search(text)
            if hit:
                line = text.count("\n", 0, hit.start()) + 1
                raise BuildError(f"{where}:{line}: {what} is not allowed (CSP default-src 'self')")


def render(src: Path = DEFAULT_SRC) -> BuildResult:
    """Build everything in memory (pure: no writes)."""
    builder = _Builder(src)
    page_names = [n for n in _files(builder.pages_dir) if n.endswith(".html") and "/" not in n]
    if not page_names:
        raise BuildError(f"no pages found in {builder.pages_dir}")
    pages = {name: builder.page(name) for name in page_names}
    # Assets nobody references are still published (e.g. for e-mails).
    for logical in sorted(builder.sources):
        builder.asset(logical, "build")

    manifest = {
        "version": MANIFEST_VERSION,
        "hash": "sha256",
        "assets": {logical: builder.hashed[logical] for logical in sorted(builder.hashed)},
        "files": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in sorted(builder.output.items())},
        "pages": {name: {"sha256": _sha256(data), "size": len(data)} for name, data in sorted(pages.items())},
    }
    static = dict(sorted(builder.output.items()))
    static[MANIFEST_NAME] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return BuildResult(static=static, pages=pages, assets=manifest["assets"])


def _sync(out: Path, files: dict[str, bytes], dry_run: bool) -> list[str]:
    """Make *out* contain exactly *files*; return the changes (made or needed)."""
    changes: list[str] = []
    for rel, data in sorted(files.items()):
        path = out / rel
        if path.is_file() and path.read_bytes() == data:
            continue
        changes.append(f"{'update' if path.exists() else 'create'} {path}")
        if not dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
    if out.is_dir():
        for rel in _files(out):
            if rel not in files:
                changes.append(f"remove {out / rel}")
                if not dry_run:
                    (out / rel).unlink()
        if not dry_run:
            for d in sorted((p for p in out.rglob("*") if p.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
    return changes


def build(
    src: Path = DEFAULT_SRC,
    static_out: Path = DEFAULT_STATIC_OUT,
    pages_out: Path = DEFAULT_PAGES_OUT,
    check: bool = False,
) -> list[str]:
    """Build into the output directories (or, with *check*, only compare)."""
    result = render(src)
    changes = _sync(static_out, result.static, dry_run=check)
    changes += _sync(pages_out, result.pages, dry_run=check)
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="frontend sources")
    parser.add_argument("--static-out", type=Path, default=DEFAULT_STATIC_OUT)
    parser.add_argument("--pages-out", type=Path, default=DEFAULT_PAGES_OUT)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the output is stale")
    parser.add_argument("--validate", action="store_true",
                        help="build in memory only, compare and write nothing: exit 2 on a problem in the sources")
    args = parser.parse_args(argv)
    try:
        if args.validate:
            result = render(args.src)
            print(f"build_assets: the sources build ({len(result.pages)} pages, {len(result.static)} static files)")
            return 0
        changes = build(args.src, args.static_out, args.pages_out, check=args.check)
    except BuildError as exc:
        print(f"build_assets: error: {exc}", file=sys.stderr)
        return 2
    for line in changes:
        print(line)
    if args.check and changes:
        print(
            "build_assets: the built frontend is out of date; run scripts/build_assets.py",
            file=sys.stderr,
        )
        return 1
    if not changes:
        print("build_assets: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
