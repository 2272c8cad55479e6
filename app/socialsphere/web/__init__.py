"""Static frontend pages and hashed assets (development server).

In production Nginx serves the same files (see ``app/frontend/README.md``);
this blueprint makes ``flask run`` / Gunicorn alone serve a working site with
the same URLs and the same cache headers.

Built output (committed; produced by ``app/scripts/build_assets.py``):

* ``socialsphere/templates_static/<page>.html`` -- the HTML pages, served at
  stable URLs with ``Cache-Control: no-cache``;
* ``socialsphere/static/`` -- content-hashed assets (``js/app.3fa2b1c9.js``)
  served with ``Cache-Control: public, max-age=31536000, immutable``, plus
  ``manifest.json`` (``no-cache``).
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, abort, send_from_directory

PACKAGE_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = PACKAGE_DIR / "static"
PAGES_DIR = PACKAGE_DIR / "templates_static"

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


def page_path(url: str) -> Path:
    """Return the built file served at *url* (for tests and tooling)."""
    return PAGES_DIR / PAGES[url]


__all__ = ["bp", "PAGES", "STATIC_DIR", "PAGES_DIR", "serve_static", "page_path"]
