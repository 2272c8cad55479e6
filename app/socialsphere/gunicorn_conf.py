"""Gunicorn settings for development, the app's tests and app/bench.

``gunicorn -c python:socialsphere.gunicorn_conf socialsphere.wsgi:app``

Production does not use this file: the deployment runs the configuration that the
socialsphere_app role renders from its variables
(roles/socialsphere_app/templates/gunicorn.conf.py.j2; the role's README documents them),
and its systemd unit sets no ``GUNICORN_*`` variable. The defaults here are that role's
defaults, so what runs on a laptop and in the benchmark is what runs in production
(tests/unit/test_shared_facts.py fails when the two disagree): ``sync`` workers,
2 x cores + 1 (at least 2), recycled after 2000 (+ up to 200) requests. Why ``sync``, and
the measurement that is still pending: app/README.md, "Performance".

``GUNICORN_*`` environment variables override each setting (app/bench compares worker
classes with them): GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_WORKER_CLASS,
GUNICORN_THREADS, GUNICORN_TIMEOUT, GUNICORN_GRACEFUL_TIMEOUT, GUNICORN_KEEPALIVE,
GUNICORN_MAX_REQUESTS, GUNICORN_MAX_REQUESTS_JITTER, GUNICORN_BACKLOG,
GUNICORN_FORWARDED_ALLOW_IPS.
"""
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
backlog = int(os.environ.get("GUNICORN_BACKLOG", "2048"))
workers = int(os.environ.get("GUNICORN_WORKERS", max(2, multiprocessing.cpu_count() * 2 + 1)))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
# gthread only; keep threads <= SOCIALSPHERE_DB_POOL_SIZE + SOCIALSPHERE_DB_MAX_OVERFLOW (default 5 + 5)
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "200"))
# Shorter than HAProxy's `timeout server`: the app answers (or its stuck worker is
# killed) before the proxy gives up; the deployment's preflight checks that relation.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# Longer than HAProxy's idle timeout to the backend, so the proxy never reuses a closing
# socket (non-sync workers only: a sync worker closes the connection after each response).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
accesslog = None  # the app logs each request as JSON with its request id
errorlog = "-"
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = False  # HUP reload picks up new code


def child_exit(server, worker):
    """Prometheus multiprocess mode: drop the dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
