#!/usr/bin/env python3
"""Benchmark the API under Gunicorn against PostgreSQL, on 127.0.0.1 only.

Starts a throw-away PostgreSQL (or uses BENCH_DATABASE_URL), runs the migrations,
seeds a user with posts, starts Gunicorn with each worker configuration to compare,
and drives it with ``wrk`` (bounded duration) for:

* read:  GET  /api/v1/posts?per_page=20   (authenticated, 200 posts in the table)
* write: POST /api/v1/posts               (authenticated, JSON body, quota checked)

Usage: bench/bench.sh [--duration 10] [--connections 32] [--configs sync:5,gthread:2x4]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never anything else


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_postgres(tmp: str) -> tuple[str, list[str], str]:
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[-1]
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(tmp, "data")
    port = free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL, cwd=tmp)
    opts = f"-p {port} -k {tmp} -c listen_addresses={HOST} -c max_connections=200 -c shared_buffers=128MB"
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(tmp, "pg.log"),
                    "-w", "start"], check=True, stdout=subprocess.DEVNULL, cwd=tmp)
    subprocess.run([*as_user, f"{bindir}/psql", "-h", HOST, "-p", str(port), "-U", "postgres", "-c",
                    "CREATE DATABASE socialsphere"], check=True, stdout=subprocess.DEVNULL, cwd=tmp)
    stop = [*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]
    return f"postgresql+psycopg2://postgres@{HOST}:{port}/socialsphere", stop, tmp


def app_env(url: str, tmp: str) -> dict[str, str]:
    import secrets

    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALSPHERE_")}
    env.update({
        "SOCIALSPHERE_ENV": "production",
        "SOCIALSPHERE_DATABASE_URL": url,
        "SOCIALSPHERE_SECRET_KEY": secrets.token_urlsafe(48),
        "SOCIALSPHERE_JWT_KEYS": json.dumps({"bench": secrets.token_urlsafe(48)}),
        "SOCIALSPHERE_JWT_ACTIVE_KID": "bench",
        "SOCIALSPHERE_ACCESS_TOKEN_TTL": "3600",
        "SOCIALSPHERE_TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "SOCIALSPHERE_BASE_URL": "https://bench.invalid",
        "SOCIALSPHERE_LOG_LEVEL": "WARNING",  # the JSON access log would measure stderr, not the app
        "SOCIALSPHERE_INSTANCE_PATH": tmp,
        "PYTHONPATH": str(APP_DIR),
    })
    return env


SEED = r"""
import json
from socialsphere import create_app
from socialsphere.extensions import db
from socialsphere.models import Plan, Post, User
from socialsphere.security import hash_password
from socialsphere.subscriptions import ensure_default_plans, subscribe
app = create_app()
with app.app_context():
    ensure_default_plans()
    user = User(email="bench@example.com", name="Bench", password_hash=hash_password("bench password 1"))
    db.session.add(user)
    subscribe(user, db.session.scalar(db.select(Plan).where(Plan.code == "business")))
    db.session.flush()
    for i in range(200):
        db.session.add(Post(user_id=user.id, title=f"Post {i}", body="Benchmark content " * 5,
                            platforms=["twitter", "linkedin"]))
    db.session.commit()
# a token from POST /auth/login, as clients get them (tied to its session since issue 11 item 2)
r = app.test_client().post("/api/v1/auth/login", json={"email": "bench@example.com", "password": "bench password 1"})
assert r.status_code == 200, r.get_data(as_text=True)
print(json.dumps({"token": r.get_json()["access_token"]}))
"""


def wrk(url: str, token: str, duration: int, connections: int, script: str | None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
           "-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": ms("50%"), "p90": ms("90%"), "p99": ms("99%"), "requests": total,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(0) if errors else ""}


def run_config(env: dict[str, str], spec: str, token: str, args, tmp: str) -> list[tuple[str, dict]]:
    kind, _, count = spec.partition(":")
    threads = "1"
    workers = count
    if "x" in count:
        workers, threads = count.split("x")
    port = free_port()
    prom = tempfile.mkdtemp(prefix="prom-", dir=tmp)
    genv = dict(env, GUNICORN_BIND=f"{HOST}:{port}", GUNICORN_WORKERS=workers, GUNICORN_WORKER_CLASS=kind,
                GUNICORN_THREADS=threads, PROMETHEUS_MULTIPROC_DIR=prom)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:socialsphere.gunicorn_conf",
                             "socialsphere.wsgi:app"], env=genv, cwd=tmp)
    base = f"http://{HOST}:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gunicorn did not become ready")
        script = os.path.join(tmp, "post.lua")
        Path(script).write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"title": "bench", "body": "Written by the benchmark", "platforms": ["twitter"]}\'\n')
        wrk(base + "/api/v1/posts?per_page=20", token, 2, args.connections, None)  # warm-up
        results = [
            ("GET /api/v1/posts", wrk(base + "/api/v1/posts?per_page=20", token, args.duration, args.connections, None)),
            ("POST /api/v1/posts", wrk(base + "/api/v1/posts", token, args.duration, args.connections, script)),
        ]
        return results
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (bounded)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--configs", default="sync:5,gthread:2x4",
                        help="worker configs: class:count or class:workersxthreads")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="socialsphere-bench-")
    stop_pg = None
    try:
        url = os.environ.get("BENCH_DATABASE_URL")
        if not url:
            url, stop_pg, _ = start_postgres(tmp)
        env = app_env(url, tmp)
        flask = [sys.executable, "-m", "flask", "--app", "socialsphere.wsgi"]
        subprocess.run([*flask, "db", "upgrade"], env=env, check=True, cwd=tmp, capture_output=True)
        token = json.loads(subprocess.run([sys.executable, "-c", SEED], env=env, check=True, cwd=tmp,
                                          capture_output=True, text=True).stdout.strip().splitlines()[-1])["token"]
        rows = []
        for spec in args.configs.split(","):
            for name, r in run_config(env, spec, token, args, tmp):
                rows.append((spec, name, r))
        print(f"\nwrk -t2 -c{args.connections} -d{args.duration}s, Gunicorn + PostgreSQL on {HOST}, "
              f"{os.cpu_count()} cores shared by wrk, Gunicorn and PostgreSQL\n")
        print(f"{'workers':<14} {'endpoint':<20} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
              f"{'requests':>9} {'non-2xx':>8}")
        for spec, name, r in rows:
            print(f"{spec:<14} {name:<20} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p90']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['requests']:>9} {r['non2xx']:>8}  {r['socket_errors']}")
        return 0
    finally:
        if stop_pg:
            subprocess.run(stop_pg, check=False, stdout=subprocess.DEVNULL, cwd=tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
