"""Test-only crash window for ``tests/test_faults.py``; never on the path outside those tests.

A real ``kill -9`` lands wherever the process happens to be, and the interesting places (between
writing a checkpoint's bytes and publishing them) last microseconds. When
``ROBUSTSR_TEST_PAUSE=<glob>`` is set, the ``os.replace`` that would publish a file whose name
matches the glob first truncates the temp file to half its size (the bytes a write cut off
halfway would leave), writes the temp file's path to ``$ROBUSTSR_TEST_MARKER`` and sleeps. The
test then SIGKILLs the process inside that window. Nothing is faked about the crash itself: the
process dies with a half-written temp file on disk, exactly as a kill during the write would.
"""

import fnmatch
import os
import time

_PATTERN = os.environ.get("ROBUSTSR_TEST_PAUSE")

if _PATTERN:
    _real_replace = os.replace

    def _paused_replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if fnmatch.fnmatch(os.path.basename(os.fspath(dst)), _PATTERN):
            os.truncate(src, os.path.getsize(src) // 2)
            with open(os.environ["ROBUSTSR_TEST_MARKER"], "w", encoding="utf-8") as fh:
                fh.write(os.fspath(src))
            time.sleep(300)
        return _real_replace(src, dst, *args, **kwargs)

    os.replace = _paused_replace
