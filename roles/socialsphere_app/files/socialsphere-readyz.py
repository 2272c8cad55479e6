#!/usr/bin/python3
"""Wait until the app's /readyz answers 200 (installed by roles/socialsphere_app as
/usr/local/bin/socialsphere-readyz; `fab deploy` runs it on the app host after a reload).

Usage: socialsphere-readyz [--timeout SECONDS] [--interval SECONDS] URL
       socialsphere-readyz http://10.0.20.21:8000/readyz --timeout 90

Exit 0: URL answered 200. Exit 1: it did not within --timeout (the message names the
URL and the last answer: HTTP status and body, or the connection error). Exit 2: usage.
"""
from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

REQUEST_TIMEOUT = 5.0


def probe(url: str, timeout: float = REQUEST_TIMEOUT) -> tuple[bool, str]:
    """One GET: (answered 200, what it answered). Also socialsphere-switch.py's probe."""
    try:
        # The URL is checked to be http(s) in main() (here and in socialsphere-switch.py).
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            return resp.status == 200, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        body = exc.read(200).decode(errors="replace").strip()
        return False, f"HTTP {exc.code} {body}".strip()
    except (urllib.error.URLError, OSError) as exc:
        return False, str(getattr(exc, "reason", exc))


def positive_seconds(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value}")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="socialsphere-readyz",
                                     description="Wait until the app's /readyz answers 200.")
    parser.add_argument("url", help="the /readyz URL, e.g. http://10.0.20.21:8000/readyz")
    parser.add_argument("--timeout", type=positive_seconds, default=60.0, help="seconds to wait at most (default: 60)")
    parser.add_argument("--interval", type=positive_seconds, default=1.0, help="seconds between attempts (default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https"):
        parser.error(f"not an http(s) URL: {args.url}")
    deadline = time.monotonic() + args.timeout
    while True:
        ok, answer = probe(args.url)
        if ok:
            print(f"{args.url}: {answer}")
            return 0
        if time.monotonic() >= deadline:
            print(f"socialsphere-readyz: {args.url} did not answer 200 within {args.timeout:g}s (last: {answer})",
                  file=sys.stderr)
            return 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
