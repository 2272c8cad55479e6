"""In-process fixed-window rate limits per client IP (defence in depth behind HAProxy).

HAProxy's stick tables are the primary limit; this one protects the app when a request
reaches it some other way.  Counters live in the memory of each process: under Gunicorn
every worker counts on its own, so one client may get up to ``limit x workers`` requests
per window through (and a restart resets the counters).  That is accepted on purpose: no
shared state, no database write per request.

* Limits are ``COUNT/SECONDS`` (``SOCIALSPHERE_RATE_LIMIT_*``); ``0`` disables one.
* Windows are aligned on multiples of ``SECONDS`` (epoch time), so every counter of a
  limit expires at once and the table is simply dropped when the window changes.
* The client is ``request.remote_addr``, i.e. the address ProxyFix took from
  ``X-Forwarded-For`` when ``SOCIALSPHERE_TRUSTED_PROXIES`` > 0, else the TCP peer (a
  client cannot spoof its address with a header the app does not trust).  IPv6 clients are
  counted per /64 (one host usually owns a whole /64).
* At most ``MAX_KEYS`` addresses are tracked per limit and window; further addresses share
  one overflow counter, so memory stays bounded during a distributed flood.
* Over the limit: 429 ``rate_limited`` with ``Retry-After`` (seconds until the window ends).
"""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import current_app, request

from .errors import ApiError

MAX_KEYS = 100_000
OVERFLOW_KEY = "*overflow*"
_CREATE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Limit:
    count: int  # 0 = disabled
    seconds: int


def parse_limit(value: Any, name: str) -> Limit:
    """``"10/3600"`` -> Limit(10, 3600); ``"0"``/``"off"`` -> disabled; raise ValueError."""
    if isinstance(value, Limit):
        return value
    text = str(value).strip().lower()
    if text in {"0", "off", "false", "none"}:
        return Limit(0, 1)
    count, sep, seconds = text.partition("/")
    try:
        limit = Limit(int(count), int(seconds)) if sep else None
    except ValueError:
        limit = None
    if limit is None or limit.count < 0 or limit.seconds < 1:
        raise ValueError(f"{name} must be COUNT/SECONDS (e.g. 10/3600) or 0, got {value!r}")
    return limit


def client_key(addr: str | None) -> str:
    """The counter key of a client address: the IPv4 address, or the IPv6 /64."""
    if not addr:
        return "unknown"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr[:64]
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class FixedWindowLimiter:
    """Thread-safe fixed-window counters for one limit (one instance per app and limit)."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str) -> int:
        """Count one request; return 0 if allowed, else the seconds until the window ends."""
        if self.limit.count == 0:
            return 0
        now = self.clock()
        window = int(now // self.limit.seconds)
        with self._lock:
            if window != self._window:
                self._window = window
                self._counts = {}
            if key not in self._counts and len(self._counts) >= MAX_KEYS:
                key = OVERFLOW_KEY
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        if count <= self.limit.count:
            return 0
        return max(1, math.ceil((window + 1) * self.limit.seconds - now))


def limiter(name: str) -> FixedWindowLimiter:
    """The app's limiter for ``name`` (config key ``RATE_LIMIT_<NAME>``), created on first use."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    limiters = app.extensions.setdefault("socialsphere_rate_limits", {})
    found = limiters.get(name)
    if found is None:
        with _CREATE_LOCK:
            found = limiters.get(name)
            if found is None:
                key = "RATE_LIMIT_" + name.upper()
                found = limiters[name] = FixedWindowLimiter(parse_limit(app.config[key], key))
    return found


def rate_limited(name: str) -> Callable:
    """View decorator: count the request against limit ``name`` for the client IP."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            retry_after = limiter(name).hit(client_key(request.remote_addr))
            if retry_after:
                from .metrics import RATE_LIMITED

                RATE_LIMITED.labels(name).inc()
                raise ApiError("too many requests from this address; try again later",
                               status=429, code="rate_limited",
                               headers={"Retry-After": str(retry_after)})
            return view(*args, **kwargs)

        wrapper._rate_limit = name  # type: ignore[attr-defined]  # openapi.py declares the 429
        return wrapper

    return decorator
