"""Every docstring example of every package runs as a test.

The examples are read from the source files (with :mod:`ast`), not from the
imported objects: the per-event detector modules may be compiled with
mypyc, whose functions doctest's finder does not see. Each example runs in
the namespace of the imported module, so it tests what the process runs
(compiled or not).
"""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("detectors", "alerts", "stream")


def _modules_with_examples() -> list[str]:
    names = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if ">>>" in path.read_text(encoding="utf-8"):
                rel = path.relative_to(ROOT).with_suffix("")
                names.append(".".join(rel.parts).removesuffix(".__init__"))
    return names


def _docstrings(tree: ast.Module, prefix: str):
    """(qualified name, docstring, line) of the module and of every class and function in it."""
    doc = ast.get_docstring(tree, clean=False)
    if doc:
        yield prefix, doc, 1
    stack: list[tuple[str, ast.AST]] = [(prefix, tree)]
    while stack:
        name, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                qual = f"{name}.{child.name}"
                doc = ast.get_docstring(child, clean=False)
                if doc:
                    yield qual, doc, child.lineno
                stack.append((qual, child))


MODULES = _modules_with_examples()


def test_the_packages_have_examples():
    assert {m.split(".")[0] for m in MODULES} == set(PACKAGES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    path = ROOT / Path(*name.split(".")).with_suffix(".py")
    if not path.exists():
        path = ROOT / Path(*name.split(".")) / "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    attempted = 0
    for qual, doc, line in _docstrings(tree, name):
        test = parser.get_doctest(doc, dict(vars(module)), qual, str(path), line)
        if test.examples:
            runner.run(test)
            attempted += len(test.examples)
    result = runner.summarize(verbose=False)
    assert attempted > 0
    assert result.failed == 0, f"{result.failed} of {attempted} examples failed in {name}"
