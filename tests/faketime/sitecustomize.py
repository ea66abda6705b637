"""Loaded by every Python process of the faketime runs (tests/faketime_runs.sh puts this folder
on PYTHONPATH): time.sleep waits on a condition variable instead.

Under libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1, CPython's time.sleep, which
sleeps with clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), fails with EINVAL because
libfaketime shifts that absolute deadline by the fake offset (tests/README.md). The standard
library sleeps in places we do not control (subprocess's timeouts, for one), so the runs swap
the implementation of the wait; what the clock reads is untouched.
"""

from __future__ import annotations

import os
import threading
import time

if "FAKETIME" in os.environ:

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        threading.Event().wait(seconds)

    time.sleep = _sleep
