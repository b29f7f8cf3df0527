"""Zero the stale bytes inside the pages of a fresh compacted copy, so they compress away.

A backup export is a compacting LMDB copy; LMDB leaves each page's free space (between
the pointer array and the nodes) holding stale bytes from its copy buffer, about a third
of the file for B-trees filled in random order. LMDB never reads them, but zstd has to
compress them: zeroed, a partition object is ~1/3 smaller and takes ~1/4 less CPU to
compress (and less to verify, upload, download and restore). The walk is in
``_native/pagegaps.pyx``; its docstring says exactly which bytes and why they are safe.

Only for a copy straight out of ``mdb_env_copyfd2(MDB_CP_COMPACT)``, before anything
writes to it: such a file has no free pages, so every page header in it is live.
"""

from __future__ import annotations

import logging
import mmap
import os
import sys
from pathlib import Path

from ._pagegaps import PageLayoutError, clear_page_gaps

#: Linux ≥ 5.14: fault every page of a mapping in writable with one call. A shared file
#: mapping otherwise takes one write fault per 4 KiB page, which tripled this pass's cost.
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE",
                              23 if sys.platform == "linux" else None)

__all__ = ["PageLayoutError", "clear_copy_page_gaps"]

log = logging.getLogger(__name__)


def clear_copy_page_gaps(data_path: str | os.PathLike[str], page_size: int) -> int:
    """Zero the page free space of the compacted copy ``data_path`` in place; bytes zeroed.

    Nothing depends on it: a file that does not look like a compacted copy (see
    ``PageLayoutError``) is left exactly as it is, with a warning, and 0 is returned.
    The change goes to the page cache only; whoever needs the copy durable syncs it.
    """
    with open(data_path, "r+b") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            return 0
        with mmap.mmap(file.fileno(), size) as mapped:
            _populate_writable(mapped)
            view = memoryview(mapped)
            try:
                return clear_page_gaps(view, page_size)
            except PageLayoutError as err:
                log.warning("not clearing page free space in %s: %s", Path(data_path), err)
                return 0
            finally:
                view.release()


def _populate_writable(mapped: mmap.mmap) -> None:
    if MADV_POPULATE_WRITE is None or not hasattr(mapped, "madvise"):
        return
    try:
        mapped.madvise(MADV_POPULATE_WRITE)
    except OSError:  # an older kernel (EINVAL): the pages fault in one at a time instead
        pass
