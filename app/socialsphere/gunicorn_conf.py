"""Gunicorn settings (``gunicorn -c python:socialsphere.gunicorn_conf socialsphere.wsgi:app``).

Defaults are overridable with GUNICORN_* environment variables; the systemd unit of the
deploy role sets them.  Default: ``gthread``, one worker process per core (at least 2) with
4 threads each.  On this hardware class sync x5 and gthread 2x4 are equal on short requests
(REFERENCES.md: ~2.4k vs 2.2-2.5k req/s), and our own runs were never worse with gthread;
but POST /api/v1/ai/generate may wait up to SOCIALSPHERE_AI_TIMEOUT on a remote provider,
and a sync worker would be blocked for all that time, while threads keep serving.
gthread also honours HTTP keep-alive from HAProxy.  See README "Performance".
"""
import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", max(2, multiprocessing.cpu_count())))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
# keep threads <= SOCIALSPHERE_DB_POOL_SIZE + SOCIALSPHERE_DB_MAX_OVERFLOW (default 5 + 5)
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
# longer than HAProxy's idle timeout to the backend, so the proxy never reuses a closing socket
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "0"))
accesslog = None  # the app logs each request as JSON with its request id
errorlog = "-"
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = False  # HUP reload picks up new code


def child_exit(server, worker):
    """Prometheus multiprocess mode: drop the dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
