"""engine.dirlock: one owner per data directory, shown with real second processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.dirlock import LOCK_FILE_NAME, DirectoryLock, holder_pid
from engine.errors import DataDirectoryInUseError, TesseraError

ROOT = Path(__file__).resolve().parent.parent

# A child that takes the lock, says so on stdout, and holds it until its stdin closes.
HOLDER = textwrap.dedent(
    """
    import sys
    from engine.dirlock import DirectoryLock
    lock = DirectoryLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    sys.stdin.read()
    lock.release()
    print("released", flush=True)
    """
)

# A child that tries once and prints what happened.
TRY = textwrap.dedent(
    """
    import sys
    from engine.dirlock import DirectoryLock
    from engine.errors import DataDirectoryInUseError
    try:
        DirectoryLock(sys.argv[1]).acquire()
    except DataDirectoryInUseError as err:
        print("refused:", err)
        sys.exit(3)
    print("acquired")
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture
def holder(tmp_path: Path):
    """A second process holding ``tmp_path/data``'s lock; yields (data_dir, process)."""
    data = tmp_path / "data"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(data)], cwd=ROOT, env=_env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        yield data, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_second_process_is_refused_with_pid_and_advice(holder):
    data, process = holder
    with pytest.raises(DataDirectoryInUseError) as caught:
        DirectoryLock(data).acquire()
    message = str(caught.value)
    assert str(data) in message
    assert f"PID {process.pid}" in message
    assert "or use another --data directory" in message
    assert caught.value.pid == process.pid
    assert isinstance(caught.value, TesseraError)
    assert holder_pid(data) == process.pid


def test_another_process_is_refused_too(holder):
    data, process = holder
    result = subprocess.run([sys.executable, "-c", TRY, str(data)], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert f"stop the process with PID {process.pid}" in result.stdout


def test_free_again_after_holder_releases(holder):
    data, process = holder
    process.stdin.close()
    assert process.stdout.readline().strip() == "released"
    process.wait(timeout=10)
    with DirectoryLock(data) as lock:
        assert lock.held
        assert holder_pid(data) == os.getpid()
    assert not lock.held
    assert holder_pid(data) is None  # emptied on release


def test_free_again_after_holder_is_killed(holder):
    data, process = holder
    process.kill()
    process.wait(timeout=10)
    # The kernel dropped the flock with the process; its stale PID is overwritten.
    with DirectoryLock(data):
        assert holder_pid(data) == os.getpid()


def test_same_process_shares_the_lock_until_the_last_release(tmp_path: Path):
    data = tmp_path / "data"
    outer = DirectoryLock(data).acquire()
    inner = DirectoryLock(tmp_path / "." / "data").acquire()  # another spelling, same dir
    inner.release()
    # Still held for other processes while the outer holder has it.
    result = subprocess.run([sys.executable, "-c", TRY, str(data)], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"PID {os.getpid()}" in result.stdout
    outer.release()
    result = subprocess.run([sys.executable, "-c", TRY, str(data)], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "acquired", result.stderr


def test_check_free_creates_nothing_and_sees_holder(tmp_path: Path, holder):
    missing = tmp_path / "missing"
    DirectoryLock.check_free(missing)
    assert not missing.exists()
    data, process = holder
    with pytest.raises(DataDirectoryInUseError, match=f"PID {process.pid}"):
        DirectoryLock.check_free(data)


def test_acquire_is_idempotent_and_release_too(tmp_path: Path):
    lock = DirectoryLock(tmp_path / "d")
    assert lock.acquire() is lock.acquire()
    lock.release()
    lock.release()
    assert (tmp_path / "d" / LOCK_FILE_NAME).exists()  # never deleted


def test_create_false_refuses_missing_directory(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        DirectoryLock(tmp_path / "nope").acquire(create=False)
    assert not (tmp_path / "nope").exists()
