"""tests/labkit/rotation.py: each app host's time out of rotation during a rollout, from
the edge HAProxies' server states (what test_release_rolling.py prints per host)."""
import pathlib
import sys
import time
from collections import Counter

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from labkit import rotation  # noqa: E402


def test_in_rotation_means_ready_and_up():
    assert rotation.in_rotation("ready", "UP")
    assert rotation.in_rotation("ready", "UP 1/2")  # one check failed, not down yet
    assert not rotation.in_rotation("drain", "DRAIN")
    assert not rotation.in_rotation("maint", "MAINT")
    assert not rotation.in_rotation("ready", "DOWN")
    assert not rotation.in_rotation("ready", "DOWN 1/2")  # recovering, not up yet


def test_a_host_is_out_from_the_first_edges_drain_until_every_edge_has_it_up():
    samples = [
        (0.0, "edge1", "app1", "ready", "UP"), (0.0, "edge2", "app1", "ready", "UP"),
        (0.0, "edge1", "app2", "ready", "UP"), (0.0, "edge2", "app2", "ready", "UP"),
        (10.0, "edge1", "app1", "drain", "DRAIN"),
        (10.5, "edge2", "app1", "drain", "DRAIN"),
        (20.0, "edge1", "app1", "ready", "DOWN 1/2"),  # ready again, not UP yet
        (21.0, "edge1", "app1", "ready", "UP"),
        (22.0, "edge2", "app1", "ready", "UP"),  # the last edge: back in rotation
        (30.0, "edge2", "app2", "drain", "DRAIN"),
        (31.0, "edge1", "app2", "drain", "DRAIN"),
        (40.0, "edge1", "app2", "ready", "UP"),
        (41.0, "edge2", "app2", "ready", "UP"),
        (50.0, "edge1", "app2", "maint", "MAINT"),  # out again, never back
    ]
    spans = rotation.out_of_rotation_spans(list(reversed(samples)))  # any order
    assert spans == {"app1": [(10.0, 22.0)], "app2": [(30.0, 41.0), (50.0, None)]}


def test_report_per_host_with_median_max_goal_and_failures():
    spans = {"app1": [(110.0, 122.0)], "app2": [(130.0, 148.5)], "app3": [(160.0, None)]}
    failures = [(115.0, "create"), (131.0, "me"), (132.0, "me"), (200.0, "me")]

    def between(start, end):
        return Counter(kind for t, kind in failures if start <= t <= end)

    lines, durations = rotation.per_host_report(spans, ["app1", "app2", "app3", "app4"], origin=100.0,
                                                      goal=15.0, resolution=0.4, failures_between=between)
    assert durations == [12.0, 18.5]
    assert lines == [
        "  app1: 12.0s out of rotation (+10.0s to +22.0s), failed requests meanwhile: {'create': 1}",
        "  app2: 18.5s out of rotation (+30.0s to +48.5s), failed requests meanwhile: {'me': 2}",
        "  app3: out of rotation from +60.0s and not back at the end",
        "  app4: never out of rotation (not drained: nothing to activate, or kept as the last one)",
        "  per host: median 15.2s, max 18.5s; goal <= 15s per host: ABOVE (+/- 0.4s sampling; printed, not asserted)",
    ]


def test_the_watch_samples_every_edge_and_keeps_changes_only():
    states = {"edge1": {"app1": {"admin": "ready", "status": "UP"}},
              "edge2": {"app1": {"admin": "ready", "status": "UP"}}}

    def servers_of(edge):
        if edge == "edge2" and states["edge2"] is None:
            raise RuntimeError("docker exec failed")  # a missed sample
        return {k: dict(v) for k, v in states[edge].items()}

    with rotation.RotationWatch(["edge1", "edge2"], servers_of, interval=0.01) as watch:
        time.sleep(0.1)
        states["edge1"]["app1"] = {"admin": "drain", "status": "DRAIN"}
        states["edge2"]["app1"] = {"admin": "drain", "status": "DRAIN"}
        time.sleep(0.1)
        saved, states["edge2"] = states["edge2"], None
        time.sleep(0.05)
        states["edge2"] = saved
        states["edge1"]["app1"] = {"admin": "ready", "status": "UP"}
        states["edge2"]["app1"] = {"admin": "ready", "status": "UP"}
        time.sleep(0.1)
    assert [(e, s, a, st) for _, e, s, a, st in sorted(watch.samples)].count(("edge1", "app1", "drain", "DRAIN")) == 1
    assert len(watch.samples) == 6
    assert watch.seen == {("edge1", "app1"): {"UP", "DRAIN"}, ("edge2", "app1"): {"UP", "DRAIN"}}
    (start, end), = watch.spans()["app1"]
    assert 0.1 <= end - start <= 2.0
    assert watch.reads["edge1"] > 10 and 0 < watch.resolution < 0.5
