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


# ------------------------------------------------- the owners that share ./data in practice

TESSERA = [sys.executable, "-m", "engine.cli"]


def _tessera(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TESSERA, *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def served(tmp_path: Path):
    """A `tessera serve` process on tmp_path/data with one acknowledged item."""
    sys.path.insert(0, str(Path(__file__).parent))
    from server_process import start_server

    server = start_server(tmp_path)
    client = server.client()
    client.create_table(TableName="Demo", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "user", "KeyType": "HASH"},
                                   {"AttributeName": "seq", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"},
                                              {"AttributeName": "seq", "AttributeType": "N"}])
    client.put_item(TableName="Demo", Item={"user": {"S": "kept"}, "seq": {"N": "1"}})
    try:
        yield server
    finally:
        server.kill()


def _still_has_the_item(server) -> bool:
    got = server.client().get_item(TableName="Demo",
                                   Key={"user": {"S": "kept"}, "seq": {"N": "1"}})
    return "Item" in got


def test_demo_beside_a_server_fails_fast_and_the_server_loses_nothing(served, tmp_path):
    result = _tessera("demo", "--data", str(tmp_path / "data"), "--items", "10", "--replace")
    assert result.returncode == 3
    line = _one_line(result.stderr)
    assert f"stop the process with PID {served.process.pid}" in line
    assert _still_has_the_item(served)
    served.process.terminate()
    assert served.process.wait(timeout=60) == 0  # a clean shutdown: nothing was pulled away
    assert "Traceback" not in served.log()


def test_offline_restore_beside_a_server_fails_fast(served, tmp_path):
    client = served.client()
    arn = client.create_backup(TableName="Demo", BackupName="before-restore")["BackupDetails"]["BackupArn"]
    from server_process import wait_for_backup

    assert wait_for_backup(client, arn)["BackupStatus"] == "AVAILABLE"
    backup_id = arn.rsplit("/", 1)[1]
    result = _tessera("backups", "restore", backup_id, "--store", str(tmp_path / "backups"),
                      "--data", str(tmp_path / "data"), "--table", "Restored")
    assert result.returncode == 3
    assert f"PID {served.process.pid}" in _one_line(result.stderr)
    assert "Restored" not in client.list_tables()["TableNames"]
    assert _still_has_the_item(served)


def test_two_engines_in_two_processes(tmp_path: Path):
    data = tmp_path / "data"
    opener = textwrap.dedent(
        """
        import sys
        from engine import Engine
        from engine.errors import DataDirectoryInUseError
        try:
            engine = Engine.open(sys.argv[1])
        except DataDirectoryInUseError as err:
            print("refused:", err, flush=True)
            sys.exit(3)
        print("open", flush=True)
        sys.stdin.read()
        engine.close()
        """
    )
    first = subprocess.Popen([sys.executable, "-c", opener, str(data)], cwd=ROOT, env=_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "open"
        second = subprocess.run([sys.executable, "-c", opener, str(data)], cwd=ROOT,
                                env=_env(), capture_output=True, text=True, timeout=120)
        assert second.returncode == 3, second.stderr
        assert f"stop the process with PID {first.pid}" in second.stdout
    finally:
        first.stdin.close()
        assert first.wait(timeout=60) == 0


def test_demo_never_deletes_a_table_it_did_not_create(tmp_path: Path):
    from engine import Engine

    data = tmp_path / "data"
    with Engine.open(data) as engine:
        engine.create_table("Demo", partition_key=("user", "S"), sort_key=("seq", "N"))
        engine.table("Demo").put_item({"user": "mine", "seq": 1})
    result = _tessera("demo", "--data", str(data), "--items", "10")
    assert result.returncode == 1
    assert "pass --replace" in _one_line(result.stderr)
    with Engine.open(data) as engine:
        assert engine.table("Demo").get_item({"user": "mine", "seq": 1}) is not None
    result = _tessera("demo", "--data", str(data), "--items", "10", "--replace")
    assert result.returncode == 0, result.stderr
    with Engine.open(data) as engine:
        assert engine.table("Demo").get_item({"user": "mine", "seq": 1}) is None
