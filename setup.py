"""Build hook: the per-event detector modules compiled to C with mypyc.

Everything else about the package is in pyproject.toml. The compiled modules
are the same Python sources (type-checked by mypy, then translated to C); a
machine without a C compiler, or ``TOCSIN_PURE_PYTHON=1`` at install time,
gets the plain Python package, which behaves identically, only slower.
``benchmarks/keys_cost.py`` prints which of the two it measured.
``TOCSIN_REQUIRE_COMPILED=1`` (the Dockerfile's build stage) turns each of
those fallbacks into an error: an image must not ship pure Python unnoticed.
"""

from __future__ import annotations

import os
import shutil
import sys

from setuptools import Extension, setup

#: Hot per-event modules, compiled together (calls between them stay native).
#: Not compiled: events.py (msgspec reads its annotations at run time),
#: timeutil.py (compiled int / int division rounds twice past 2**53) and
#: the record classes of model.py (cold).
COMPILED = [
    "detectors/baseline.py",
    "detectors/calendar.py",
    "detectors/diagnosis.py",
    "detectors/disk.py",
    "detectors/features.py",
    "detectors/latency.py",
    "detectors/sketches.py",
    "detectors/traffic.py",
]


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _fallback(why: str) -> list:
    if _flag("TOCSIN_REQUIRE_COMPILED"):
        sys.exit(f"tocsin: {why}, and TOCSIN_REQUIRE_COMPILED=1")
    print(f"tocsin: {why}; installing pure Python", file=sys.stderr)
    return []


# The setup.py commands that build extensions. pip also runs setup.py for
# egg_info / dist_info (the build's requirements and metadata): mypycify type-
# checks all the modules, so it runs only when something is built.
_BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop", "bdist_egg"}


def _extensions() -> list:
    if _flag("TOCSIN_PURE_PYTHON") or not _BUILD_COMMANDS.intersection(sys.argv[1:]):
        return []
    if not (shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")):
        return _fallback("no C compiler found")
    try:
        from mypyc.build import mypycify
    except ImportError:  # built without the build requirements (e.g. --no-build-isolation)
        return _fallback("mypyc not available")
    print(f"tocsin: compiling {len(COMPILED)} detector modules with mypyc, and detectors/_native.c",
          file=sys.stderr)
    # The compiled modules import some that are not compiled (detectors.cause_model, on
    # River), whose libraries the isolated build environment does not hold: checked as Any.
    exts = mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3")
    # WindowAggregator.add over a batch, written in C (features.py falls back to numpy without it).
    exts.append(Extension("detectors._native", ["detectors/_native.c"], extra_compile_args=["-O2"]))
    for ext in exts:
        # A compiler error leaves the pure Python module in place, unless required.
        ext.optional = not _flag("TOCSIN_REQUIRE_COMPILED")
    return exts


setup(ext_modules=_extensions())
