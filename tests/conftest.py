"""Shared fixtures. Hypothesis profiles: ``default`` locally, ``ci`` (more examples, no
deadline) when HYPOTHESIS_PROFILE=ci, as .ci/run sets."""

from __future__ import annotations

import os
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
