"""Background work lowers only its own threads' priority, never the caller's."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from engine.priority import lower_thread_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux")
def test_lowers_only_the_calling_thread_and_threads_it_starts():
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, int] = {}

    def background() -> None:
        assert lower_thread_priority(5)
        seen["self"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        child = threading.Thread(target=lambda: seen.__setitem__(
            "child", os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        child.start()
        child.join()

    worker = threading.Thread(target=background)
    worker.start()
    worker.join()
    assert seen["self"] == seen["child"] == min(19, before + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert not lower_thread_priority(0)
