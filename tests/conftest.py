"""Shared fixtures: factories for events and windows, and simulator recordings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detectors.events import RequestEvent
from detectors.features import HostStats, WindowFeatures

os.environ.setdefault("NO_COLOR", "1")


def pytest_sessionstart(session):
    """Refuse to test a compiled module older than its source: the edit would not be tested."""
    root = Path(__file__).resolve().parents[1]
    for so in sorted(root.glob("detectors/*.so")):
        src = so.with_name(so.name.split(".")[0] + ".py")
        if not src.exists():
            src = src.with_suffix(".c")  # detectors/_native.c
        if src.exists() and src.stat().st_mtime > so.stat().st_mtime:
            pytest.exit(
                f"{src.relative_to(root)} changed after it was compiled ({so.name}): "
                "rebuild with `.venv/bin/pip install -e .` (or delete detectors/*.so to test pure Python)",
                returncode=4,
            )


@pytest.fixture
def make_request():
    def make(ts: float, service: str = "ent", **kw) -> RequestEvent:
        kw.setdefault("status", 200)
        kw.setdefault("latency_ms", 100.0)
        return RequestEvent(ts=ts, service=service, **kw)

    return make


@pytest.fixture
def make_window():
    """WindowFeatures for one service minute, usual French residential traffic unless told."""

    def make(start: float = 0.0, service: str = "ent", count: int = 300, **kw) -> WindowFeatures:
        hosts = kw.pop("hosts", None)
        f = WindowFeatures(service=service, start=start, end=start + 60.0, count=count)
        f.p50_ms, f.p95_ms, f.p99_ms = 100.0, 250.0, 400.0
        f.distinct_clients = max(1, count // 3)
        f.top10_share = 0.05
        f.countries = {"FR": 0.96, "BE": 0.02, "CH": 0.02}
        f.top_endpoint, f.top_endpoint_share = "/cahier-de-textes", 0.3
        f.top_user_agent_share = 0.2
        f.new_client_share = 0.05
        f.hosts = hosts if hosts is not None else {
            f"{service}-web-{i}": HostStats(count // 4, 100.0, 250.0, 0.0) for i in range(1, 5)
        }
        for k, v in kw.items():
            setattr(f, k, v)
        return f

    return make


@pytest.fixture(scope="session")
def sim_recording(tmp_path_factory):
    """A small simulated week with the incident day, as JSONL files (built once)."""
    from stream.tools import simulator

    out = tmp_path_factory.mktemp("sim")
    sc = simulator.Scenario(seed=7, history_days=4, scale=3.0)
    simulator.write_jsonl(sc, out)
    return out
