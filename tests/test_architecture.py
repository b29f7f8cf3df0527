"""The architecture as tests: the import contract (.importlinter), no private names across
modules, and the services' narrow interfaces (engine/services.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from engine.backup.manager import BackupManager
from engine.repartition import TableLocks
from engine.replica import ReplicaManager
from engine.services import (
    BackupCatalog,
    OpenTables,
    PartitionedTables,
    PartitionLocks,
    ReplicaSource,
    RestorableTables,
    TableRecords,
)
from engine.tableset import TableSet

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [ROOT / "engine"]


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in package.rglob("*.py"))


def _native_modules() -> set[str]:
    """Private extension modules (``engine._reads`` …) are the package's own: modules of
    ``engine`` may import them; nothing may import another module's private *names*."""
    return {f"_{pyx.stem}" for pyx in (ROOT / "_native").glob("*.pyx")}


def test_the_import_contract_holds():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), str(ROOT / ".importlinter")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.lower() or "0 broken" in result.stdout.lower()


def _private_uses(path: Path, native: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not name.startswith("__") and name not in native:
                    found.append(f"{where}:{node.lineno}: imports {name}")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            found.append(f"{where}:{node.lineno}: {ast.unparse(base)}.{attr}")
    return found


def test_no_module_touches_another_modules_private_names():
    native = _native_modules()
    offenders = [use for path in _modules() for use in _private_uses(path, native)]
    assert offenders == []


def test_the_scan_catches_what_it_is_for(tmp_path):
    """The check above can fail: a private import and a private attribute are found."""
    sample = tmp_path / "probe.py"
    sample.write_text("from .table import _projection\n\n\ndef f(engine):\n"
                      "    return engine._tables, self._fine\n")
    assert len(_private_uses(sample, _native_modules())) == 2


@pytest.mark.parametrize("protocol", [TableRecords, OpenTables, PartitionedTables,
                                      RestorableTables])
def test_the_table_set_implements_the_table_protocols(tmp_path, protocol):
    from engine.catalog import Catalog

    catalog = Catalog(tmp_path / "system")
    try:
        tables = TableSet(tmp_path, catalog, map_size_bytes=1 << 24, wal_segment_bytes=1 << 16)
        assert isinstance(tables, protocol)
    finally:
        catalog.close()


def test_the_services_implement_theirs():
    assert isinstance(TableLocks(), PartitionLocks)
    for cls, protocol in ((BackupManager, BackupCatalog), (ReplicaManager, ReplicaSource)):
        missing = [name for name in dir(protocol)
                   if not name.startswith("_") and not hasattr(cls, name)
                   and name not in getattr(protocol, "__annotations__", {})]
        assert missing == [], f"{cls.__name__} lacks {missing} of {protocol.__name__}"
