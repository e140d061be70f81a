"""The modules compiled with mypyc behave exactly as their Python source.

Each compiled module is loaded a second time from its ``.py`` file, as plain
Python, and both run the same stream; verdicts and serialised states must be
equal. Skipped where the package was installed without compiling.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import detectors
import detectors.disk
from detectors.events import DiskHealthEvent


def _pure(module) -> object:
    """``module`` loaded again from its Python source, under another name."""
    src = Path(module.__file__).with_name(module.__name__.rsplit(".", 1)[1] + ".py")
    name = module.__name__.rsplit(".", 1)[0] + "._pure_" + module.__name__.rsplit(".", 1)[1]
    spec = importlib.util.spec_from_file_location(name, src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[name]
    return mod


ROOT = Path(__file__).resolve().parents[2]

# Run a module with every detectors.* module imported from its .py source.
_PURE_RUNNER = """
import importlib.util, runpy, sys
from pathlib import Path

ROOT = Path(sys.argv[1])

class PureDetectors:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.startswith("detectors."):
            src = ROOT / "detectors" / (name.split(".", 1)[1] + ".py")
            if not src.exists():
                raise ImportError(f"{name}: pure Python only")  # detectors._native
            return importlib.util.spec_from_file_location(name, src)
        return None

sys.meta_path.insert(0, PureDetectors)
import detectors.disk, detectors.features
assert detectors.disk.__file__.endswith(".py"), detectors.disk.__file__
assert detectors.features._native is None
module = sys.argv[2]
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__")
"""


def test_compiled_modules_are_named():
    names = detectors.compiled_modules()
    assert all(n.startswith("detectors.") and "__mypyc" not in n for n in names)
    assert ("detectors.disk" in names) == detectors.disk.__file__.endswith(".so")


@pytest.mark.skipif(not detectors.disk.__file__.endswith(".so"), reason="detectors.disk is not compiled here")
def test_compiled_disk_detector_equals_its_source():
    pure = _pure(detectors.disk)
    assert pure.__file__.endswith(".py")
    rng = random.Random(5)
    fast, slow = detectors.disk.DiskFailureDetector(), pure.DiskFailureDetector()
    states_fast: dict[str, object] = {}
    states_slow: dict[str, object] = {}
    counters = {f"d{i}": {"5": 0.0, "187": 0.0, "188": 0.0, "197": 0.0, "198": 0.0} for i in range(200)}
    flagged = 0
    t = 1_600_000_000.0
    for step in range(4000):
        disk = rng.choice(list(counters))
        smart = counters[disk]
        for k in smart:
            r = rng.random()
            if r < 0.004:
                smart[k] += float(rng.randint(1, 40))
            elif r < 0.006 and k == "197":
                smart[k] = 0.0
        reading = {k: v for k, v in smart.items() if rng.random() > 0.1}
        reading["9"] = 1000.0 + step * (0.5 if rng.random() < 0.05 else 8.0)
        t += rng.uniform(600.0, 90_000.0)
        ev = DiskHealthEvent(
            ts=t,
            host=f"h{int(disk[1:]) % 4}",
            disk=disk,
            smart=reading,
            model=rng.choice(["M1", "M2", None]),
            io_latency_ms=rng.choice([None, rng.uniform(2.0, 80.0)]),
            io_errors=rng.choice([None, 0, 0, rng.randint(0, 5)]),
            failure=rng.random() < 0.002,
        )
        vf = fast.score_one(ev, states_fast.get(disk))
        vs = slow.score_one(ev, states_slow.get(disk))
        assert (vf.score, vf.flagged, vf.signal, vf.evidence, vf.warming_up) == (
            vs.score,
            vs.flagged,
            vs.signal,
            vs.evidence,
            vs.warming_up,
        )
        assert str(vf.value) == str(vs.value) and str(vf.expected) == str(vs.expected)  # (NaN too)
        flagged += vf.flagged
        states_fast[disk] = fast.learn_one(ev, states_fast.get(disk))
        states_slow[disk] = slow.learn_one(ev, states_slow.get(disk))
        assert states_fast[disk].to_bytes() == states_slow[disk].to_bytes()
    assert 100 < flagged < 3000  # both the flagged and the quiet paths ran
    assert fast.to_bytes() == slow.to_bytes()


@pytest.mark.skipif(not detectors.compiled_modules(), reason="no detector module is compiled here")
def test_backtest_output_is_the_same_compiled_and_pure(sim_recording, tmp_path):
    """The whole backtest of a simulated week, compiled modules against their sources: same bytes."""
    out = {}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for kind in ("compiled", "pure"):
        out[kind] = tmp_path / kind
        args = ["backtest", "--requests", str(sim_recording / "requests.jsonl.gz"),
                "--disks", str(sim_recording / "disks.jsonl"), "--out", str(out[kind])]
        if kind == "compiled":
            cmd = [sys.executable, "-m", "stream.cli", *args]
        else:
            cmd = [sys.executable, "-c", _PURE_RUNNER, str(ROOT), "stream.cli", *args]
        run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{kind}: {run.stderr[-2000:]}"
    names = sorted(p.name for p in out["compiled"].iterdir())
    assert "anomalies.jsonl" in names and "alerts.jsonl" in names
    assert names == sorted(p.name for p in out["pure"].iterdir())
    for name in names:
        assert (out["compiled"] / name).read_bytes() == (out["pure"] / name).read_bytes(), name
    assert (out["compiled"] / "alerts.jsonl").read_bytes().count(b"\n") >= 3
