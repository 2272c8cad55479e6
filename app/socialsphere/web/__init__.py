"""Static frontend pages and hashed assets (development server).

In production Nginx serves the same files (see ``app/frontend/README.md``);
this blueprint makes ``flask run`` / Gunicorn alone serve a working site with
the same URLs and the same cache headers.

Built output (produced by ``app/scripts/build_assets.py`` from ``app/frontend/``):

* ``socialsphere/templates_static/<page>.html`` -- the HTML pages, served at
  stable URLs with ``Cache-Control: no-cache``;
* ``socialsphere/static/`` -- content-hashed assets (``js/app.3fa2b1c9.js``)
  served with ``Cache-Control: public, max-age=31536000, immutable``, plus
  ``manifest.json`` (``no-cache``).

The output is not committed (see ``app/README.md``, "Frontend build"): the release
build puts it into the wheel and the artifact, and in a source checkout
:func:`build_from_sources` makes it, called by the tests (``tests/conftest.py``) and,
in development, by this blueprint when an app is created (``flask run``).
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from pathlib import Path

from flask import Blueprint, abort, send_from_directory

PACKAGE_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = PACKAGE_DIR / "static"
PAGES_DIR = PACKAGE_DIR / "templates_static"
#: The frontend build of a source checkout (``app/scripts/``); an installed wheel has none.
BUILD_SCRIPT = PACKAGE_DIR.parent / "scripts" / "build_assets.py"

log = logging.getLogger(__name__)

#: URL path -> built page file (in ``templates_static/``).
PAGES: dict[str, str] = {
    "/": "index.html",
    "/signup": "signup.html",
    "/login": "login.html",
    "/forgot-password": "forgot-password.html",
    "/reset-password": "reset-password.html",
    "/verify-email": "verify-email.html",
    "/app": "app.html",
    "/admin": "admin.html",
}

#: ``name.<8 hex>.ext`` -- the content-hashed names the build writes.
HASHED_NAME = re.compile(r"\.[0-9a-f]{8}\.[A-Za-z0-9]+$")

MANIFEST = "manifest.json"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

_MIMETYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".html": "text/html",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain",
}

bp = Blueprint("web", __name__)


def _mimetype(filename: str) -> str | None:
    return _MIMETYPES.get(Path(filename).suffix.lower())


def _page_view(filename: str):
    def view():
        response = send_from_directory(PAGES_DIR, filename, mimetype="text/html", max_age=None, conditional=True)
        response.headers["Cache-Control"] = NO_CACHE
        response.expires = None
        return response

    view.__name__ = "page_" + filename.removesuffix(".html").replace("-", "_")
    return view


def serve_static(filename: str):
    """Serve a built asset: hashed names are immutable, the manifest is revalidated.

    Like the production Nginx rules, nothing else under ``/static/`` is served.
    """
    hashed = HASHED_NAME.search(filename) is not None
    if (not hashed and filename != MANIFEST) or filename.startswith(".") or "/." in filename:
        abort(404)
    response = send_from_directory(
        STATIC_DIR,
        filename,
        mimetype=_mimetype(filename),
        max_age=None,
        conditional=True,
    )
    response.expires = None
    response.headers["Cache-Control"] = IMMUTABLE if hashed else NO_CACHE
    return response


for _url, _file in PAGES.items():
    bp.add_url_rule(_url, view_func=_page_view(_file), methods=["GET"])


@bp.record_once
def _install_static(state) -> None:
    """Serve ``/static/`` with our cache headers.

    If the application was created with Flask's default static route
    (``Flask(__name__)``), take that endpoint over so both URL rules behave the
    same; otherwise register our own rule.
    """
    app = state.app
    if "static" in app.view_functions and app.static_url_path == "/static":
        app.view_functions["static"] = serve_static
    else:
        state.add_url_rule("/static/<path:filename>", endpoint="static_asset", view_func=serve_static)


def build_from_sources() -> list[str] | None:
    """Build ``app/frontend/`` into :data:`STATIC_DIR` and :data:`PAGES_DIR` (a source checkout only).

    Returns the files created, updated or removed (empty when the build was current:
    unchanged files are not rewritten), or None without a build script (an installed
    wheel carries its build). A problem in the sources raises the build's ``BuildError``.
    """
    if not BUILD_SCRIPT.is_file():
        return None
    name = "socialsphere_build_assets"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, BUILD_SCRIPT)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the script runs
        spec.loader.exec_module(module)
    return module.build(static_out=STATIC_DIR, pages_out=PAGES_DIR)


@bp.record_once
def _build_in_development(state) -> None:
    """``flask run`` (and the other development commands) from a source checkout serve a
    current build of ``app/frontend/``: built when the app is created."""
    if state.app.config.get("ENV_NAME") == "development":
        changes = build_from_sources()
        if changes:
            log.info("frontend built from app/frontend: %d file(s) changed", len(changes))


def page_path(url: str) -> Path:
    """Return the built file served at *url* (for tests and tooling)."""
    return PAGES_DIR / PAGES[url]


__all__ = ["bp", "PAGES", "STATIC_DIR", "PAGES_DIR", "serve_static", "page_path", "build_from_sources"]
