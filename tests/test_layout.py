"""The shape of the code: imports flow one way, and stream/ has no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(pkg: str) -> dict[str, set[str]]:
    """Module -> the absolute names it imports (relative imports resolved)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / pkg).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        name = ".".join(parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_pkg else parts[:-1]
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base)
                    if node.module:
                        deps.add(f"{prefix}.{node.module}")
                    else:
                        deps.update(f"{prefix}.{a.name}" for a in node.names)
                elif node.module:
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        out[name] = deps
    return out


def test_stream_has_no_import_cycle():
    mods = _imports("stream")
    graph = {m: {d for d in deps if d in mods} for m, deps in mods.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_pure_packages_import_no_kafka_and_no_faust():
    for pkg in ("detectors", "alerts"):
        for mod, deps in _imports(pkg).items():
            bad = {d for d in deps if d.split(".")[0] in ("faust", "kafka", "aiokafka", "stream")}
            assert not bad, f"{mod} imports {sorted(bad)}"


def test_the_runner_imports_no_kafka_and_no_faust():
    deps = _imports("stream")["stream.runner"]
    assert not {d for d in deps if d.split(".")[0] in ("faust", "kafka", "aiokafka", "asyncio")}
