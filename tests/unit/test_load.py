"""tests/labkit/load.py without the lab: the pacing loop every load thread runs (the GET
load and the virtual users of labkit.userload) and the GET load itself against a server
started here on 127.0.0.1 (plain HTTP; a stand-in for labkit.edge.Edge)."""
import http.client
import pathlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from labkit import load  # noqa: E402


def run_paced(stop, **kwargs):
    """Step times (monotonic) of one paced loop and whether its bound stopped it."""
    ran_out, steps = [], []
    for _ in load.paced(stop, on_ran_out=lambda: ran_out.append(True), **kwargs):
        steps.append(time.monotonic())
    return steps, bool(ran_out)


def test_paced_keeps_its_rate_and_stops_at_its_bound():
    started = time.monotonic()
    steps, ran_out = run_paced(threading.Event(), interval=0.05, started=started, max_seconds=1.0)
    assert ran_out
    assert 14 <= len(steps) <= 21, len(steps)  # 1 s at 20 a second (at most, a busy machine: fewer)
    assert steps[-1] - started < 1.2


def test_paced_waits_its_first_delay_and_stops_when_told():
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    steps, ran_out = run_paced(stop, interval=0.1, started=started, max_seconds=60, first_delay=0.2)
    assert not ran_out
    assert steps and steps[0] - started >= 0.19
    assert 2 <= len(steps) <= 4, len(steps)  # +0.2, +0.3, +0.4 (stopped at +0.5)


def test_paced_without_catch_up_sends_the_missed_steps_at_once_and_with_it_does_not():
    def late_steps(catch_up):
        stop, steps = threading.Event(), []
        for i, _ in enumerate(load.paced(stop, 0.05, time.monotonic(), 60, lambda: None, catch_up=catch_up)):
            steps.append(time.monotonic())
            if i == 0:
                time.sleep(0.5)  # a slow answer: 10 intervals late
            if len(steps) == 6:
                break
        return steps
    burst = late_steps(None)
    assert burst[5] - burst[1] < 0.05  # the 9 missed steps follow without a pause
    spread = late_steps(5)
    assert spread[5] - spread[1] >= 0.15  # schedule restarted: 0.05 s apart again


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"ok" if self.path == "/ok" else b"no"
        self.send_response(200 if self.path == "/ok" else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


class LocalEdge:
    def __init__(self, port):
        self.port = port

    def connection(self, timeout=10.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)


def test_load_generator_sends_its_rate_and_counts_failures(server):
    with load.LoadGenerator(LocalEdge(server), path="/ok", rps=40, threads=2, max_seconds=1.0) as gen:
        time.sleep(1.5)
    assert gen.ran_out
    assert 28 <= gen.result.total <= 44, gen.result.summary()
    assert gen.result.failed == 0 and gen.result.statuses == {200: gen.result.total}
    with load.LoadGenerator(LocalEdge(server), path="/down", rps=20, threads=1, max_seconds=0.5) as bad:
        time.sleep(0.8)
    assert bad.result.total >= 8 and bad.result.failed == bad.result.total
    assert bad.result.statuses == {503: bad.result.total} and len(bad.result.failure_times) == bad.result.total
