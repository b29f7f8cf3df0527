"""Every ```python block of README.md runs as written: each in a fresh temporary directory
(its working directory), in a subprocess with the repository on sys.path; the quick start
twice in a row on the same directory. A comment ``# -> TEXT`` (after a ``print(...)`` or
on the line below it) claims what it prints: the block's output must be exactly those
lines, in order, on every run.

Markers on the line right above a block (an HTML comment, invisible on the rendered page):

- ``<!-- readme-test: skip (REASON) -->`` — not run; only for blocks that need a running
  server or S3 (the test refuses any other reason, so skips stay rare and justified).
- ``<!-- readme-test: after the quick start -->`` — run in the directory the quick start
  has just run in (the README says the block continues it).
- ``<!-- readme-test: unpacked partition -->`` — run after the steps written above it in
  the README (a backup's ``p0001`` fetched and unpacked into the directory), which this
  test does with the engine, ``zstandard`` and ``tarfile``.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<what>.*?)\s*-->")
SKIP = re.compile(r"skip \((?P<reason>.+)\)")
ALLOWED_SKIP_REASONS = ("server", "s3")
CLAIM = re.compile(r"#\s*->\s*(?P<text>.*)$")
RUN_TIMEOUT_S = 300


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    heading: str  # the section it is in
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"{slug}-line{self.line}"

    def claims(self) -> list[str]:
        return [m.group("text").strip() for m in map(CLAIM.search, self.code.splitlines())
                if m is not None]


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, each with its section and its marker (the
    non-blank line right above the fence, if it is a readme-test comment)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    heading, index = "", 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("```"):  # a fenced block: its '#' lines are not headings
            end = next(j for j in range(index + 1, len(lines)) if lines[j].strip() == "```")
            if line.strip() == "```python":
                above = next((lines[j] for j in range(index - 1, -1, -1) if lines[j].strip()),
                             "")
                found = MARKER.search(above)
                blocks.append(Block(index + 1, heading,
                                    "\n".join(lines[index + 1:end]) + "\n",
                                    found.group("what") if found else None))
            index = end
        index += 1
    return blocks


BLOCKS = python_blocks(README.read_text())
QUICK_START = next(block for block in BLOCKS if block.heading == "Quick start")


def run_block(block: Block, cwd: Path) -> str:
    """Run ``block`` in ``cwd`` with the repository importable; its stdout (a failure
    shows the block, its stdout and its stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", block.code], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, (
        f"README.md line {block.line} ({block.heading}) failed:\n{block.code}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr[-4000:]}")
    return result.stdout


def check_claims(block: Block, stdout: str) -> None:
    claims = block.claims()
    if claims:
        assert stdout.splitlines() == claims, (
            f"README.md line {block.line} ({block.heading}) printed {stdout!r}; its "
            f"comments claim {claims!r}")


def unpack_a_partition(cwd: Path) -> None:
    """What "Restore by hand" steps 1-2 do: back up a table of this directory's engine,
    then decompress and unpack its ``p0001`` object into ``./p0001``."""
    from engine import Engine

    with Engine.open(cwd / "data") as engine:
        engine.create_table("Music", partition_key=("artist", "S"), sort_key=("year", "N"),
                            partitions=4)
        engine.table("Music").batch_write(
            puts=[{"artist": f"artist-{n}", "year": 1950 + n} for n in range(40)])
        backup_id = engine.create_backup("Music", "by-hand")["backup_id"]
        assert engine.wait_for_backup(backup_id)["status"] == "AVAILABLE"
    packed = (cwd / "backups" / backup_id / "partitions" / "p0001.tar.zst").read_bytes()
    tar_bytes = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed)).read()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        assert sorted(archive.getnames()) == ["data.mdb", "partition.json"]
        archive.extractall(cwd / "p0001", filter="data")


def test_the_readme_has_python_blocks_and_a_quick_start():
    assert any(block.heading == "Quick start" for block in BLOCKS)
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path):
    marker = block.marker or ""
    skip = SKIP.fullmatch(marker)
    if skip:
        reason = skip.group("reason")
        assert any(word in reason.lower() for word in ALLOWED_SKIP_REASONS), (
            f"README.md line {block.line}: a block may be skipped only when it needs a "
            f"running server or S3, not {reason!r}")
        pytest.skip(reason)
    assert marker in ("", "after the quick start", "unpacked partition"), (
        f"unknown readme-test marker {marker!r}")
    if marker == "after the quick start":
        run_block(QUICK_START, tmp_path)
    elif marker == "unpacked partition":
        unpack_a_partition(tmp_path)
    runs = 2 if block.heading == "Quick start" else 1  # the quick start runs twice
    for _ in range(runs):
        check_claims(block, run_block(block, tmp_path))


def test_a_failing_block_fails_the_test(tmp_path: Path):
    """The runner can fail: an exception, and output that is not what a block claims."""
    broken = Block(1, "probe", "raise RuntimeError('boom')\n", None)
    with pytest.raises(AssertionError, match="boom"):
        run_block(broken, tmp_path)
    liar = Block(1, "probe", "print(1)  # -> 2\n", None)
    with pytest.raises(AssertionError, match="claim"):
        check_claims(liar, run_block(liar, tmp_path))
