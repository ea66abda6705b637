"""Report PDFs in worker processes while reports render at the same time (a burst of them).

WeasyPrint is pure Python: a report's PDF holds the GIL for about 0.3 s, so in one process
the scheduler's other reports (reading KPIs, drawing charts, sending) wait behind it and only
one core works. While more than one report is rendering, `PdfMaker` hands the PDFs to
`WORKERS` processes instead; a lone render (a preview, a manual send, bench/reports.py) makes
its PDF in place and starts no process. Workers are spawned, not forked (the server has
threads and DuckDB open), on first use, and each exits within a second of the server's death
(a SIGKILL leaves no orphans). A worker that dies (out of memory) fails that PDF as a render
error, retried like any other, and the next PDF starts a fresh pool.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opsmetrics.clock import pause
from opsmetrics.reports.pdf import pdf_of

if TYPE_CHECKING:  # multiprocessing is imported with the first pool: ~3 MB a lone render saves
    from concurrent.futures import ProcessPoolExecutor

WORKERS = max(1, min(2, os.cpu_count() or 1))


class PdfMaker:
    def __init__(self, workers: int = WORKERS) -> None:
        self._workers = workers
        self._lock = threading.Lock()
        self._rendering = 0
        self._pool: ProcessPoolExecutor | None = None

    @contextmanager
    def rendering(self) -> Iterator[None]:
        """Around one report's rendering: how many are at once decides where PDFs are made."""
        with self._lock:
            self._rendering += 1
        try:
            yield
        finally:
            with self._lock:
                self._rendering -= 1

    def alone(self) -> bool:
        """Whether one report is rendering (or none): its PDF is then made in place."""
        with self._lock:
            return self._rendering <= 1

    def submit(self, html: str) -> Future[bytes]:
        """The PDF of the page HTML: made here when this is the only report rendering,
        else in a worker process."""
        with self._lock:
            pool = self._started() if self._rendering > 1 else None
        if pool is None:
            done: Future[bytes] = Future()
            done.set_result(pdf_of(html))
            return done
        try:
            future = pool.submit(pdf_of, html)
        except BrokenExecutor:  # the pool's is BrokenProcessPool
            self._forget(pool)
            raise
        future.add_done_callback(lambda f: self._forget(pool) if _broke(f) else None)
        return future

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                self._workers, multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent, initargs=(os.getpid(),),
            )  # fmt: skip
        return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _broke(future: Future[bytes]) -> bool:
    return not future.cancelled() and isinstance(future.exception(), BrokenExecutor)


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit once the process that started it is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            pause(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="pdf-worker-parent", daemon=True).start()


@functools.cache
def shared_pdf_maker() -> PdfMaker:
    """The process's PDF maker (its workers start only when first needed). Two first callers
    at once may each make one; only one is kept, and neither has started a process."""
    return PdfMaker()
