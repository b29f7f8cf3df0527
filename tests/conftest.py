"""Shared fixtures. Hypothesis profiles: ``default`` locally, ``ci`` (more examples, no
deadline) when HYPOTHESIS_PROFILE=ci, as .ci/run sets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers import as plain modules

# Real S3-protocol servers on loopback and the `store` fixture over every backend.
pytest_plugins = ["s3_servers"]

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def engine(tmp_path):
    from engine import Engine

    eng = Engine.open(tmp_path / "data", wal_segment_bytes=1 << 16, map_size_bytes=1 << 30)
    yield eng
    eng.close()


AWSCLI_VENV = Path(__file__).resolve().parent.parent / ".venv-awscli"


@pytest.fixture(scope="session")
def aws_cli() -> Path:
    """A working AWS CLI: ``.venv-awscli/bin/aws`` if made before, else a working ``aws`` on
    PATH, else one installed from PyPI into ``.venv-awscli`` (its own venv: the CLI pins
    its own botocore). Skipped only if that install cannot be done."""
    executable = AWSCLI_VENV / "bin" / "aws"
    if executable.exists():
        return executable
    found = shutil.which("aws")
    if found is not None and subprocess.run([found, "--version"], capture_output=True,
                                            timeout=60).returncode == 0:
        return Path(found)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(AWSCLI_VENV)], check=True,
                       timeout=120)
        subprocess.run([str(AWSCLI_VENV / "bin" / "pip"), "install", "--quiet", "awscli"],
                       check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as err:
        pytest.skip(f"could not install the AWS CLI into {AWSCLI_VENV}: {err}")
    return executable
