"""The asset pipeline (scripts/build_assets.py) and its output.

These tests need neither the database nor the application: they build the
frontend from ``app/frontend`` in memory or into temporary directories, and check
the build in place that the app serves (not committed: conftest.py builds it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import posixpath
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parent.parent
SCRIPT = APP_DIR / "scripts" / "build_assets.py"
STATIC_DIR = APP_DIR / "socialsphere" / "static"
PAGES_DIR = APP_DIR / "socialsphere" / "templates_static"
HASHED = re.compile(r"^(?P<stem>.+)\.(?P<hash>[0-9a-f]{8})\.(?P<ext>[A-Za-z0-9]+)$")


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_assets", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_assets", module)
    spec.loader.exec_module(module)
    return module


build_assets = _load_builder()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest() -> dict:
    return json.loads((STATIC_DIR / "manifest.json").read_text("utf-8"))


class _PageScan(HTMLParser):
    """Collect what matters for CSP: scripts, styles, attributes, references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.script_bodies: list[str] = []
        self.style_elements = 0
        self.style_attrs: list[str] = []
        self.handler_attrs: list[str] = []
        self.refs: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
            self._in_script = True
        if tag == "style":
            self.style_elements += 1
        for name, value in attrs:
            if name == "style":
                self.style_attrs.append(f"<{tag} style={value!r}>")
            if name.startswith("on"):
                self.handler_attrs.append(f"<{tag} {name}>")
            if name in ("src", "href") and value:
                self.refs.append(value)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.script_bodies.append(data.strip()[:80])


def _scan(html: str) -> _PageScan:
    scan = _PageScan()
    scan.feed(html)
    scan.close()
    return scan


# -- the build in place (what the app serves) ------------------------------------


def test_served_build_equals_a_fresh_build(tmp_path):
    """Rebuild from the sources into a temp dir: byte-identical to what the app serves."""
    static_out, pages_out = tmp_path / "static", tmp_path / "pages"
    build_assets.build(build_assets.DEFAULT_SRC, static_out, pages_out)
    assert _tree(static_out) == _tree(STATIC_DIR)
    assert _tree(pages_out) == _tree(PAGES_DIR)


def test_check_mode_reports_up_to_date():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_validate_mode_builds_in_memory(tmp_path):
    """`make assets-check`: the sources build; nothing is written."""
    static_out, pages_out = tmp_path / "s", tmp_path / "p"
    cmd = [sys.executable, str(SCRIPT), "--validate", "--static-out", str(static_out), "--pages-out", str(pages_out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not static_out.exists() and not pages_out.exists()


def test_build_output_is_not_in_git():
    """The build is made, not committed (app/README.md, "Frontend build")."""
    if shutil.which("git") is None or not (APP_DIR.parent / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "-C", str(APP_DIR), "ls-files", "socialsphere/static", "socialsphere/templates_static"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert tracked == []
    for built in (STATIC_DIR / "manifest.json", PAGES_DIR / "index.html"):
        ignored = subprocess.run(["git", "-C", str(APP_DIR), "check-ignore", "-q", str(built)], check=False)
        assert ignored.returncode == 0, f"{built} is not git-ignored"


def test_build_is_deterministic_and_idempotent(tmp_path):
    first = build_assets.render()
    second = build_assets.render()
    assert first.static == second.static
    assert first.pages == second.pages

    static_out, pages_out = tmp_path / "s", tmp_path / "p"
    assert build_assets.build(build_assets.DEFAULT_SRC, static_out, pages_out)  # creates
    before = {p: p.stat().st_mtime_ns for p in static_out.rglob("*") if p.is_file()}
    assert build_assets.build(build_assets.DEFAULT_SRC, static_out, pages_out) == []
    after = {p: p.stat().st_mtime_ns for p in static_out.rglob("*") if p.is_file()}
    assert before == after, "an unchanged build must not rewrite files"


def test_build_removes_stale_files(tmp_path):
    static_out, pages_out = tmp_path / "s", tmp_path / "p"
    stale = static_out / "js" / "app.0badc0de.js"
    stale.parent.mkdir(parents=True)
    stale.write_text("old build")
    (pages_out / "old").mkdir(parents=True)
    (pages_out / "old" / "gone.html").write_text("old")
    changes = build_assets.build(build_assets.DEFAULT_SRC, static_out, pages_out)
    assert not stale.exists()
    assert not (pages_out / "old").exists()
    assert any(c.startswith("remove ") for c in changes)


def test_check_mode_detects_stale_output(tmp_path):
    static_out, pages_out = tmp_path / "s", tmp_path / "p"
    build_assets.build(build_assets.DEFAULT_SRC, static_out, pages_out)
    (pages_out / "index.html").write_text("edited by hand")
    changes = build_assets.build(build_assets.DEFAULT_SRC, static_out, pages_out, check=True)
    assert changes == [f"update {pages_out / 'index.html'}"]
    assert (pages_out / "index.html").read_text() == "edited by hand"  # --check writes nothing


# -- the manifest ------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_sha256():
    manifest = _manifest()
    assert manifest["version"] == 1
    assert manifest["hash"] == "sha256"
    on_disk = set(_tree(STATIC_DIR)) - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, meta in manifest["files"].items():
        data = (STATIC_DIR / name).read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert meta["size"] == len(data), name
        m = HASHED.match(Path(name).name)
        assert m, f"{name} is not a content-hashed name"
        assert m["hash"] == meta["sha256"][:8], f"{name}: name hash does not match content"
    for page, meta in manifest["pages"].items():
        data = (PAGES_DIR / page).read_bytes()
        assert meta["sha256"] == hashlib.sha256(data).hexdigest(), page
    assert set(manifest["pages"]) == set(_tree(PAGES_DIR))


def test_manifest_maps_every_logical_asset():
    manifest = _manifest()
    sources = build_assets.DEFAULT_SRC / "assets"
    logical = {p.relative_to(sources).as_posix() for p in sources.rglob("*") if p.is_file()}
    assert set(manifest["assets"]) == logical
    assert set(manifest["assets"].values()) == set(manifest["files"])
    for name, hashed in manifest["assets"].items():
        stem, _, ext = name.rpartition(".")
        assert re.fullmatch(re.escape(stem) + r"\.[0-9a-f]{8}\." + re.escape(ext), hashed)


# -- the built pages and assets -----------------------------------------------------


PAGE_FILES = sorted(p.name for p in PAGES_DIR.glob("*.html"))


def test_expected_pages_are_built():
    assert set(PAGE_FILES) >= {
        "index.html",
        "signup.html",
        "login.html",
        "app.html",
        "admin.html",
        "verify-email.html",
        "reset-password.html",
        "forgot-password.html",
    }


@pytest.mark.parametrize("page", PAGE_FILES)
def test_pages_are_csp_compatible(page):
    html = (PAGES_DIR / page).read_text("utf-8")
    scan = _scan(html)
    assert scan.scripts, f"{page} loads no script"
    for attrs in scan.scripts:
        assert attrs.get("src"), f"{page}: inline <script>"
        assert attrs.get("type") == "module", f"{page}: classic script {attrs}"
    assert scan.script_bodies == []
    assert scan.style_elements == 0, f"{page}: <style> element"
    assert scan.style_attrs == [], f"{page}: style attributes {scan.style_attrs}"
    assert scan.handler_attrs == [], f"{page}: event handler attributes {scan.handler_attrs}"
    assert "javascript:" not in html.lower()
    # a form submitted before its module is loaded must not put values in the URL
    for form in re.findall(r"<form\b[^>]*>", html):
        assert 'method="post"' in form, f"{page}: {form}"


@pytest.mark.parametrize("page", PAGE_FILES)
def test_pages_reference_only_existing_hashed_assets(page):
    scan = _scan((PAGES_DIR / page).read_text("utf-8"))
    files = set(_manifest()["files"])
    static_refs = [r for r in scan.refs if r.startswith("/static/")]
    assert static_refs, f"{page} references no asset"
    for ref in scan.refs:
        assert not re.match(r"^(?:[a-z]+:)?//", ref, re.I), f"{page}: off-site reference {ref}"
    for ref in static_refs:
        name = ref.removeprefix("/static/")
        assert HASHED.match(Path(name).name), f"{page}: unhashed asset {ref}"
        assert name in files and (STATIC_DIR / name).is_file(), f"{page}: missing asset {ref}"


def test_js_imports_point_to_hashed_files():
    files = set(_manifest()["files"])
    specifier = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}/[^"']+)["']""")
    checked = 0
    for name in files:
        if not name.endswith(".js"):
            continue
        text = (STATIC_DIR / name).read_text("utf-8")
        for spec in specifier.findall(text):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), spec))
            assert HASHED.match(Path(target).name), f"{name}: unhashed import {spec}"
            assert target in files, f"{name}: import {spec} does not exist"
            checked += 1
    assert checked, "expected the modules to import each other"


def test_js_is_csp_and_token_safe():
    for path in STATIC_DIR.rglob("*.js"):
        text = path.read_text("utf-8")
        assert not re.search(r"\beval\s*\(|\bnew\s+Function\s*\(", text), path.name
        assert ".innerHTML" not in text, path.name
        assert "localStorage" not in text and "sessionStorage" not in text, path.name
        assert not re.search(r"""["']https?://""", text), f"{path.name}: absolute URL"


def test_css_has_no_external_resources():
    for path in STATIC_DIR.rglob("*.css"):
        text = path.read_text("utf-8")
        assert "@import" not in text
        for ref in re.findall(r"url\(\s*[\"']?([^\"')]+)", text):
            assert ref.startswith("data:") or not re.match(r"^(?:[a-z]+:)?//", ref), ref


# -- the build refuses bad sources --------------------------------------------------------


def _frontend(tmp_path: Path, page: str, assets: dict[str, str] | None = None) -> Path:
    src = tmp_path / "frontend"
    (src / "pages").mkdir(parents=True)
    (src / "pages" / "index.html").write_text(page)
    for name, text in (assets or {"js/main.js": "export const x = 1;\n"}).items():
        path = src / "assets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


OK_PAGE = '<!doctype html><title>t</title><script type="module" src="/static/js/main.js"></script>\n'


def test_small_build_rewrites_imports_and_css_urls(tmp_path):
    src = _frontend(
        tmp_path,
        OK_PAGE + '<link rel="stylesheet" href="/static/css/s.css">\n',
        {
            "js/main.js": ('import { b } from "./lib/b.js";\nimport("./lib/b.js");\nexport const a = b;\n'),
            "js/lib/b.js": "export const b = 2;\n",
            "css/s.css": "body { background: url(../img/bg.svg) }\n",
            "img/bg.svg": "<svg xmlns='http://www.w3.org/2000/svg'/>\n",
        },
    )
    result = build_assets.render(src)
    b_name = result.assets["js/lib/b.js"]
    main_js = result.static[result.assets["js/main.js"]].decode()
    assert f'from "./{b_name.removeprefix("js/")}"' in main_js
    assert f'import("./{b_name.removeprefix("js/")}")' in main_js
    css = result.static[result.assets["css/s.css"]].decode()
    assert "url(../" + result.assets["img/bg.svg"] + ")" in css
    page = result.pages["index.html"].decode()
    assert "/static/" + result.assets["js/main.js"] in page
    # changing a dependency changes the hash of the module that imports it
    (src / "assets/js/lib/b.js").write_text("export const b = 3;\n")
    again = build_assets.render(src)
    assert again.assets["js/main.js"] != result.assets["js/main.js"]


@pytest.mark.parametrize(
    "page, message",
    [
        ("<script>alert(1)</script>" + OK_PAGE, "inline <script>"),
        (OK_PAGE + '<p style="color:red">x</p>', "style= attribute"),
        (OK_PAGE + "<style>p{}</style>", "<style>"),
        (OK_PAGE + '<button onclick="x()">x</button>', "event handler"),
        (OK_PAGE + '<script src="https://cdn.example.com/x.js"></script>', "off-site"),
        (OK_PAGE + '<img src="/static/img/missing.png" alt="">', "missing asset"),
    ],
)
def test_build_rejects_csp_violations_and_missing_assets(tmp_path, page, message):
    src = _frontend(tmp_path, page)
    with pytest.raises(build_assets.BuildError, match=re.escape(message)):
        build_assets.render(src)


def test_build_rejects_import_cycles(tmp_path):
    src = _frontend(
        tmp_path,
        OK_PAGE,
        {
            "js/main.js": 'import "./other.js";\n',
            "js/other.js": 'import "./main.js";\n',
        },
    )
    with pytest.raises(build_assets.BuildError, match="cycle"):
        build_assets.render(src)


def test_build_rejects_token_storage_in_web_storage(tmp_path):
    src = _frontend(tmp_path, OK_PAGE, {"js/main.js": "localStorage.setItem('t', 'x');\n"})
    with pytest.raises(build_assets.BuildError, match="web storage"):
        build_assets.render(src)


@pytest.mark.parametrize("page", PAGE_FILES)
def test_pages_preload_every_imported_module(page):
    """No import waterfall: each page preloads its module's transitive imports."""
    html = (PAGES_DIR / page).read_text("utf-8")
    entry = re.search(r'<script type="module" src="/static/([^"]+)"', html)[1]
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', html))
    specifier = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}/[^"']+)["']""")
    closure: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        for spec in specifier.findall((STATIC_DIR / module).read_text("utf-8")):
            dep = posixpath.normpath(posixpath.join(posixpath.dirname(module), spec))
            if dep not in closure:
                closure.add(dep)
                todo.append(dep)
    assert preloaded == closure


@pytest.mark.parametrize("page", PAGE_FILES)
def test_pages_ids_and_label_references_are_consistent(page):
    """Unique ids; every label/ARIA reference points to an element; every input is labelled."""
    html = (PAGES_DIR / page).read_text("utf-8")

    class Scan(HTMLParser):
        def __init__(self):
            super().__init__()
            self.ids: list[str] = []
            self.refs: list[tuple[str, str]] = []
            self.controls: list[tuple[str, dict]] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if a.get("id"):
                self.ids.append(a["id"])
            if tag == "label" and a.get("for"):
                self.refs.append(("for", a["for"]))
            for key in ("aria-describedby", "aria-labelledby", "aria-controls"):
                for ref in (a.get(key) or "").split():
                    self.refs.append((key, ref))
            if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
                self.controls.append((tag, a))

    scan = Scan()
    scan.feed(html)
    duplicates = {i for i in scan.ids if scan.ids.count(i) > 1}
    assert not duplicates, f"{page}: duplicate ids {duplicates}"
    missing = [(k, r) for k, r in scan.refs if r not in scan.ids]
    assert not missing, f"{page}: references to missing ids {missing}"
    labelled = {r for k, r in scan.refs if k == "for"}
    for tag, attrs in scan.controls:
        assert attrs.get("id") in labelled or attrs.get("aria-label"), f"{page}: unlabelled <{tag} {attrs}>"
