"""Safe intake of untrusted PDFs (issue 15, item 1).

Every uploaded PDF (a letter, a general attachment) is checked by
:class:`PdfIntake` **before anything is stored**. The check runs in a pool of
long-lived child processes, each started with an address-space limit
(``RLIMIT_AS``, default 512 MiB); the parent gives each document a time limit
(default 5 s). A document that hangs its worker gets the worker killed and
replaced; a document that crashes it likewise; either way the caller gets an
:class:`~clientcomm.errors.InvalidDocumentError` (``timeout``, ``crashed``,
``memory``) and the pool lives on.

What is checked (reason codes in :class:`~clientcomm.letters.models.DocumentProblem`):

* bytes: ``empty``, ``too_large``, ``not_pdf`` (no ``%PDF-`` header in the first
  1024 bytes), ``truncated`` (no ``%%EOF`` in the last 2048 bytes);
* structure, with pypdf in strict mode: ``broken_xref``, ``encrypted`` (every
  method, an empty user password too: refused, never opened), ``page_tree``
  (cycles, no pages, nodes that are not dictionaries, deeper than 32),
  ``too_many_pages``, ``bad_length`` (self-referencing ``/Length``),
  ``huge_object`` (arrays or dictionaries beyond ``max_array_items``, more than
  ``max_objects`` objects, nesting too deep);
* content: **every stream reachable from the trailer is decoded** (Flate, LZW,
  RunLength, ASCII filters and chains of them; image codecs pypdf does not
  decode are kept as they are): ``decompression_bomb`` when one stream decodes to
  more than ``max_stream_bytes`` or all together to more than
  ``max_decoded_bytes``;
* active content is **refused, not stripped** (``active_content``): JavaScript
  (``/JS``, ``/JavaScript``, ``/S /JavaScript``), ``/Launch``, ``/ImportData``,
  ``/SubmitForm``, ``/GoToR``, ``/GoToE``, ``/Rendition`` actions, additional
  actions (``/AA``), embedded files, XFA and rich media. Stripping would change a
  document that a firm's system produced and that a client is to receive as it
  was made; a letter needs none of these;
* anything else pypdf raises: ``malformed``.

Every outcome is one :class:`~clientcomm.errors.InvalidDocumentError` naming the
file and the reason. On success the caller gets a
:class:`~clientcomm.letters.models.ValidatedPdf` with the page sizes (and, for
letters, the positioned text of page 1 for the address check).

pypdf: use 7.1.1 or later (pinned ``pypdf>=7.1.1,<8`` in ``pyproject.toml``):
every denial-of-service advisory published for pypdf (the most recent fixed in
6.14.2 and 6.15.0) is fixed there. The pool's limits stand even against an
unknown one.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Self

import attrs

from clientcomm.errors import InvalidDocumentError, InvalidInputError, StorageError
from clientcomm.letters import _intake_worker
from clientcomm.letters.models import PageSize, TextFragment, ValidatedPdf

__all__ = ["IntakeLimits", "PdfAttachmentScanner", "PdfIntake"]

MiB = 1 << 20
_START_TIMEOUT = 60.0


@attrs.frozen
class IntakeLimits:
    """Limits of one document's check.

    Attributes:
        max_file_bytes: largest accepted file (default 50 MiB).
        max_pages: most pages (default 1,000).
        max_objects: most objects reachable from the trailer (default 200,000).
        max_stream_bytes: most bytes one stream may decode to (default 64 MiB).
        max_decoded_bytes: most bytes all streams together may decode to
            (default 256 MiB).
        max_array_items: most items of one array or dictionary (default 50,000).
        memory_bytes: the worker's address-space limit (default 512 MiB).
        timeout: seconds one document may take in its worker (default 5).
    """

    max_file_bytes: int = 50 * MiB
    max_pages: int = 1000
    max_objects: int = 200_000
    max_stream_bytes: int = 64 * MiB
    max_decoded_bytes: int = 256 * MiB
    max_array_items: int = 50_000
    memory_bytes: int = 512 * MiB
    timeout: float = 5.0

    def _worker(self) -> _intake_worker.Limits:
        return _intake_worker.Limits(
            self.max_file_bytes,
            self.max_pages,
            self.max_objects,
            self.max_stream_bytes,
            self.max_decoded_bytes,
            self.max_array_items,
            self.memory_bytes,
        )


@attrs.define
class _Worker:
    process: BaseProcess
    conn: Connection


@attrs.define
class _Busy:
    worker: _Worker
    index: int
    deadline: float


class PdfIntake:
    """A pool of checking processes (see the module docs).

    Args:
        limits: what one document may cost.
        workers: pool size (default: the number of CPUs, at least 1).

    Use as a context manager (sync or async) or call :meth:`close`. The pool
    starts on first use; calls from several threads are served one batch at a
    time.
    """

    def __init__(
        self,
        limits: IntakeLimits | None = None,
        *,
        workers: int | None = None,
        _faults: bool = False,
    ) -> None:
        self.limits = limits or IntakeLimits()
        if self.limits.timeout <= 0 or self.limits.memory_bytes <= 0:
            raise InvalidInputError("limits", "timeout and memory must be positive")
        self.size = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self._faults = _faults
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0
        """How many workers were killed or died and were replaced (for tests, metrics)."""

    # -- lifecycle -------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_intake_worker.serve,
            args=(child, self.limits._worker(), self._faults),
            name="clientcomm-pdf-intake",
            daemon=True,
        )
        proc.start()
        child.close()
        # wait until it is ready, so start-up time never counts against a document
        try:
            ready = parent.poll(_START_TIMEOUT) and parent.recv() == ("ready",)
        except (EOFError, OSError):
            ready = False
        if not ready:
            proc.kill()
            proc.join(5)
            parent.close()
            raise StorageError("a PDF checking process did not start")
        return _Worker(proc, parent)

    def _start(self) -> None:
        if self._closed:
            raise InvalidInputError("intake", "the intake pool is closed")
        while len(self._idle) < self.size:
            self._idle.append(self._spawn())

    def _kill(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        self.replaced += 1

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        with self._lock:
            self._closed = True
            for worker in self._idle:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
                worker.process.join(2)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(2)
                worker.conn.close()
            self._idle.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    @property
    def pids(self) -> tuple[int, ...]:
        """The current workers' process ids."""
        return tuple(w.process.pid or 0 for w in self._idle)

    # -- checking --------------------------------------------------------------------
    def validate(
        self, filename: str, data: bytes, *, first_page_text: bool = False
    ) -> ValidatedPdf:
        """Check one document.

        Raises:
            InvalidDocumentError: refused (``reason`` says why); nothing kept.
        """
        result = self.validate_many([(filename, data)], first_page_text=first_page_text)[0]
        if isinstance(result, InvalidDocumentError):
            raise result
        return result

    def validate_many(
        self, items: Sequence[tuple[str, bytes]], *, first_page_text: bool = False
    ) -> list[ValidatedPdf | InvalidDocumentError]:
        """Check many documents over the whole pool; one result per item, in
        order: the validated document or the error refusing it (one bad file
        fails alone)."""
        results: list[ValidatedPdf | InvalidDocumentError | None] = [None] * len(items)
        limits = self.limits._worker()
        pending: deque[int] = deque()
        for i, (filename, data) in enumerate(items):
            pre = _intake_worker.precheck(data, limits)
            if pre is None:
                pending.append(i)
            else:
                results[i] = InvalidDocumentError(filename, *pre)
        if pending:
            with self._lock:
                self._start()
                self._dispatch(items, pending, results, first_page_text)
        out: list[ValidatedPdf | InvalidDocumentError] = []
        for r in results:
            assert r is not None
            out.append(r)
        return out

    def _dispatch(
        self,
        items: Sequence[tuple[str, bytes]],
        pending: deque[int],
        results: list[ValidatedPdf | InvalidDocumentError | None],
        first_page_text: bool,
    ) -> None:
        busy: dict[Connection, _Busy] = {}
        try:
            while pending or busy:
                while pending and self._idle:
                    worker = self._idle.pop()
                    i = pending.popleft()
                    try:
                        worker.conn.send((items[i][1], first_page_text))
                    except OSError:  # died while idle: replace, retry the item
                        self._kill(worker)
                        self._idle.append(self._spawn())
                        pending.appendleft(i)
                        continue
                    busy[worker.conn] = _Busy(worker, i, time.monotonic() + self.limits.timeout)
                timeout = max(0.0, min(b.deadline for b in busy.values()) - time.monotonic())
                ready = wait(list(busy), timeout)
                for conn in ready:
                    assert isinstance(conn, Connection)
                    job = busy.pop(conn)
                    filename = items[job.index][0]
                    try:
                        reply = conn.recv()
                    except (EOFError, OSError):
                        self._kill(job.worker)
                        self._idle.append(self._spawn())
                        results[job.index] = InvalidDocumentError(
                            filename, "crashed", "the checking process died"
                        )
                        continue
                    self._idle.append(job.worker)
                    results[job.index] = _result(filename, items[job.index][1], reply)
                now = time.monotonic()
                for conn, job in list(busy.items()):
                    if job.deadline <= now:
                        del busy[conn]
                        self._kill(job.worker)
                        self._idle.append(self._spawn())
                        results[job.index] = InvalidDocumentError(
                            items[job.index][0],
                            "timeout",
                            f"not checked within {self.limits.timeout:g} s",
                        )
        finally:
            for job in busy.values():  # interrupted: these workers are in an unknown state
                self._kill(job.worker)
                if not self._closed:
                    self._idle.append(self._spawn())

    async def avalidate(
        self, filename: str, data: bytes, *, first_page_text: bool = False
    ) -> ValidatedPdf:
        """:meth:`validate` without blocking the event loop."""
        return await asyncio.to_thread(
            self.validate, filename, data, first_page_text=first_page_text
        )

    async def avalidate_many(
        self, items: Sequence[tuple[str, bytes]], *, first_page_text: bool = False
    ) -> list[ValidatedPdf | InvalidDocumentError]:
        """:meth:`validate_many` without blocking the event loop."""
        return await asyncio.to_thread(self.validate_many, items, first_page_text=first_page_text)

    def scanner(self, *, max_bytes: int | None = None) -> PdfAttachmentScanner:
        """An :class:`~clientcomm.attachments.AttachmentScanner` checking PDFs."""
        return PdfAttachmentScanner(self, max_bytes=max_bytes)


def _result(filename: str, data: bytes, reply: Any) -> ValidatedPdf | InvalidDocumentError:
    if reply[0] == "ok":
        _, sizes, fragments = reply
        return ValidatedPdf(
            filename,
            data,
            tuple(PageSize(w, h) for w, h in sizes),
            tuple(TextFragment(x, y, t) for x, y, t in fragments),
        )
    _, reason, detail = reply
    return InvalidDocumentError(filename, reason, detail)


class PdfAttachmentScanner:
    """An :class:`~clientcomm.attachments.AttachmentScanner` that runs every
    attachment declared ``application/pdf`` (or named ``*.pdf``) through
    :class:`PdfIntake`; other types pass. Pass it as ``scanner=`` to
    :class:`~clientcomm.ClientComm`: a refused PDF raises
    :class:`~clientcomm.errors.InvalidDocumentError`, which the attachment store
    reports as an ``InvalidInputError`` of the attachment's field, nothing
    stored. The file is read into memory up to the intake's ``max_file_bytes``.
    """

    def __init__(self, intake: PdfIntake, *, max_bytes: int | None = None) -> None:
        self.intake = intake
        self.max_bytes = max_bytes or intake.limits.max_file_bytes

    async def __call__(
        self, filename: str, content_type: str, chunks: AsyncIterator[bytes], /
    ) -> None:
        if content_type != "application/pdf" and not filename.lower().endswith(".pdf"):
            return
        buf = bytearray()
        async for chunk in chunks:
            buf += chunk
            if len(buf) > self.max_bytes:
                raise InvalidDocumentError(filename, "too_large", f"over {self.max_bytes} bytes")
        await self.intake.avalidate(filename, bytes(buf))
