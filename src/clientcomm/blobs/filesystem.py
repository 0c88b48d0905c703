"""Filesystem BlobStore: atomic, durable, streamed writes under one root directory.

Layout: ``<root>/<firm_id>/<fan>/<blob_id>``, where ``<fan>`` is two hex digits of
the SHA-256 of the blob id (256 sub-directories per firm, evenly filled whatever
the ids look like).

A ``put`` writes to a temporary file in the blob's own directory (created with
``O_EXCL`` under a name starting with ``.partial-``, which no blob id can have),
fsyncs it, hard-links it to the final name and fsyncs the directory. ``link``
fails if the name exists, so an existing blob is never overwritten, and of two
concurrent writers of one id (in one process or several) exactly one wins. A
crash leaves at most a ``.partial-*`` file, never a partial blob; those files are
invisible to every method and removed by :meth:`FileBlobStore.sweep_partial`.

File I/O runs in worker threads, in few large calls (~1 MiB each; reads fetch
the next MiB ahead while the current one is consumed), so the event loop never
blocks on the disk and memory stays bounded for any blob size.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from clientcomm.blobs._stream import iter_chunks, validate_chunk_size
from clientcomm.blobs.base import ByteChunks, validate_blob_id
from clientcomm.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)

__all__ = ["PARTIAL_PREFIX", "FileBlobStore"]

PARTIAL_PREFIX: Final = ".partial-"
"""Name prefix of temporary files; blob ids cannot start with a dot."""

_BATCH: Final = 1 << 20  # bytes per worker-thread hop, reading and writing
_O_BINARY: Final = getattr(os, "O_BINARY", 0)
_T = TypeVar("_T")


async def _run(fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn(*args)`` in a worker thread.

    If the caller is cancelled, wait for the thread to finish before re-raising
    CancelledError: the thread may be using a file descriptor that the caller's
    cleanup is about to close.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, functools.partial(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation wins
        raise


def _discard_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # mark retrieved: a read-ahead nobody waits for


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (no-op where directories cannot be opened)."""
    if os.name == "nt":  # pragma: no cover - Windows cannot fsync a directory
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: this filesystem has no directory sync
            raise
    finally:
        os.close(fd)


def _ensure_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) if missing and make its entry durable."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    _fsync_dir(path.parent)


def _storage_error(op: str, exc: OSError, firm_id: str, blob_id: str | None) -> StorageError:
    code = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else None
    reason = exc.strerror or type(exc).__name__
    return StorageError(
        f"blob store {op} failed: {reason}", op=op, errno=code, firm_id=firm_id, id=blob_id
    )


class _PendingBlob:
    """One ``put`` in progress: a temporary file and what has been done with it.

    Every method but ``abort`` runs in a worker thread; ``abort`` runs after the
    last thread call has finished (see ``_run``).
    """

    def __init__(self, fan_dir: Path, final: Path, blob_id: str) -> None:
        self.fan_dir = fan_dir
        self.final = final
        self.tmp = fan_dir / f"{PARTIAL_PREFIX}{secrets.token_hex(8)}-{blob_id}"
        self.fd: int | None = None
        self.linked = False

    def begin(self) -> bool:
        """Create the directories and the temporary file; False if the blob exists."""
        if os.path.lexists(self.final):
            return False
        _ensure_dir(self.fan_dir.parent)
        _ensure_dir(self.fan_dir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY
        self.fd = os.open(self.tmp, flags, 0o600)
        return True

    def write(self, parts: list[bytes]) -> None:
        assert self.fd is not None
        _write_all(self.fd, parts[0] if len(parts) == 1 else b"".join(parts))

    def finish(self, parts: list[bytes]) -> bool:
        """Write the rest, make it durable and publish it; False if the id was taken."""
        assert self.fd is not None
        if parts:
            self.write(parts)
        os.fsync(self.fd)
        fd, self.fd = self.fd, None
        os.close(fd)
        try:
            os.link(self.tmp, self.final)
        except FileExistsError:
            return False
        self.linked = True
        os.unlink(self.tmp)
        _fsync_dir(self.fan_dir)
        return True

    def abort(self) -> None:
        """Remove everything this put created (best effort, never raises)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
        if self.linked:
            with contextlib.suppress(OSError):
                os.unlink(self.final)
            self.linked = False


class _BlobReader:
    """An open blob, read a block at a time in worker threads.

    ``close`` may be called from the event loop while a read is still running
    in a thread (the reader was abandoned with a read-ahead in flight): the fd
    is then closed by that read when it ends, never under its feet.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._remaining = 0
        self._busy = False
        self._closing = False

    def read(self, block: int) -> tuple[bytes, bool]:
        """Read up to ``block`` bytes (opening on first use); True once at the end."""
        with self._lock:
            if self._closing:
                return b"", True
            self._busy = True
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | _O_BINARY)
                self._remaining = os.fstat(self._fd).st_size
            parts: list[bytes] = []
            want = min(block, self._remaining)
            while want > 0:
                data = os.read(self._fd, want)
                if not data:  # shorter than it was at open: stop
                    self._remaining = 0
                    break
                parts.append(data)
                want -= len(data)
                self._remaining -= len(data)
            eof = self._remaining <= 0
        finally:
            with self._lock:
                self._busy = False
                if self._closing:
                    self._close_fd()
        if eof:
            self.close()
        return (parts[0] if len(parts) == 1 else b"".join(parts)), eof

    def close(self) -> None:
        with self._lock:
            self._closing = True
            if not self._busy:
                self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


class FileBlobStore:
    """A BlobStore in a local directory tree (see the module docstring for layout).

    ``root`` is created if missing. It must be on a case-sensitive filesystem
    that supports hard links (any local POSIX filesystem; not FAT). Files are
    created with mode 0600, directories 0700.

    Raises:
        ConfigurationError: ``root`` cannot be created or is not a directory, or
            the filesystem is case-insensitive (blob ids ``a`` and ``A`` would
            collide).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)
        self._closed = False
        try:
            self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"blob store root cannot be created: {exc.strerror or exc}"
            ) from exc
        if not self._root.is_dir():
            raise ConfigurationError("blob store root is not a directory")
        self._check_case_sensitive()

    @property
    def root(self) -> Path:
        """The root directory."""
        return self._root

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self._root)!r})"

    async def __aenter__(self) -> FileBlobStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- BlobStore ----------------------------------------------------------

    async def put(self, firm_id: str, blob_id: str, chunks: ByteChunks) -> int:
        """Store the chunks as one blob, atomically and durably; returns its size.

        Chunks are gathered into writes of about 1 MiB, each done in a worker
        thread. If anything fails, or the call is cancelled, the temporary file
        is removed and no blob is visible. Exceptions raised by ``chunks``
        propagate unchanged.

        Raises:
            InvalidInputError: bad firm or blob id, ``chunks`` not an iterable of
                bytes chunks, a chunk that is not bytes-like.
            ConflictError: the blob already exists (checked before reading
                ``chunks`` and again, race-free, when publishing).
            StorageError: an OS error (disk full, permissions, I/O error), or the
                store is closed.
        """
        _, fan_dir, final = self._paths(firm_id, blob_id)
        pending = _PendingBlob(fan_dir, final, blob_id)

        async def hop(fn: Callable[..., _T], *args: object) -> _T:
            try:
                return await _run(fn, *args)
            except OSError as exc:
                raise _storage_error("put", exc, firm_id, blob_id) from exc

        try:
            if not await hop(pending.begin):
                raise ConflictError(f"blob {blob_id!r} already exists", firm_id=firm_id, id=blob_id)
            parts: list[bytes] = []
            buffered = total = 0
            async with contextlib.aclosing(iter_chunks(chunks)) as stream:
                async for chunk in stream:
                    if not chunk:
                        continue
                    parts.append(chunk)
                    buffered += len(chunk)
                    if buffered >= _BATCH:
                        await hop(pending.write, parts)
                        total += buffered
                        parts, buffered = [], 0
            self._check_open()
            if not await hop(pending.finish, parts):
                raise ConflictError(f"blob {blob_id!r} already exists", firm_id=firm_id, id=blob_id)
            return total + buffered
        except BaseException:
            pending.abort()
            raise

    async def open(
        self, firm_id: str, blob_id: str, *, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """Stream the blob in chunks of ``chunk_size`` bytes (the last may be shorter).

        Reads ~1 MiB per worker-thread call. A blob deleted while being read is
        still read to the end (POSIX semantics).

        Raises (on first iteration):
            InvalidInputError: bad firm or blob id, ``chunk_size`` < 1.
            NotFoundError: no such blob.
            StorageError: an OS error, or the store is closed.
        """
        _, _, final = self._paths(firm_id, blob_id)
        validate_chunk_size(chunk_size)
        block = chunk_size * max(1, _BATCH // chunk_size)
        reader = _BlobReader(final)
        loop = asyncio.get_running_loop()
        ahead: asyncio.Future[tuple[bytes, bool]] | None = None
        try:
            ahead = current = loop.run_in_executor(None, reader.read, block)
            eof = False
            while not eof:
                try:
                    data, eof = await current
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    raise NotFoundError("blob", blob_id) from None
                except OSError as exc:
                    raise _storage_error("open", exc, firm_id, blob_id) from exc
                ahead = None
                if not eof:  # read the next block while this one is consumed
                    ahead = current = loop.run_in_executor(None, reader.read, block)
                if len(data) <= chunk_size:
                    if data:
                        yield data
                else:
                    for start in range(0, len(data), chunk_size):
                        yield data[start : start + chunk_size]
        finally:
            if ahead is not None:  # abandoned mid-stream: nobody will look at it
                ahead.add_done_callback(_discard_result)
            reader.close()

    async def size(self, firm_id: str, blob_id: str) -> int:
        """The blob's size in bytes.

        Raises:
            InvalidInputError: bad firm or blob id.
            NotFoundError: no such blob.
            StorageError: an OS error, or the store is closed.
        """
        _, _, final = self._paths(firm_id, blob_id)
        try:
            return (await _run(os.stat, final)).st_size
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError("blob", blob_id) from None
        except OSError as exc:
            raise _storage_error("size", exc, firm_id, blob_id) from exc

    async def exists(self, firm_id: str, blob_id: str) -> bool:
        """Whether the blob exists (a blob being written does not, yet).

        Raises:
            InvalidInputError: bad firm or blob id.
            StorageError: an OS error, or the store is closed.
        """
        _, _, final = self._paths(firm_id, blob_id)
        try:
            await _run(os.stat, final)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _storage_error("exists", exc, firm_id, blob_id) from exc
        return True

    async def delete(self, firm_id: str, blob_id: str) -> bool:
        """Delete the blob durably; returns False if it did not exist.

        Readers that already opened it finish reading; the id can be reused.

        Raises:
            InvalidInputError: bad firm or blob id.
            StorageError: an OS error, or the store is closed.
        """
        _, fan_dir, final = self._paths(firm_id, blob_id)
        try:
            await _run(self._unlink, final, fan_dir)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise _storage_error("delete", exc, firm_id, blob_id) from exc
        return True

    async def aclose(self) -> None:
        """Close the store; later calls raise StorageError. Idempotent.

        Puts already past their last chunk complete.
        """
        self._closed = True

    # -- maintenance --------------------------------------------------------

    async def sweep_partial(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Remove temporary files left by crashed writers; returns how many.

        Only files not modified for ``older_than`` are removed, so puts still in
        progress (which touch their file at least every ~1 MiB) are left alone;
        choose ``older_than`` longer than your slowest source's pause.

        Raises:
            InvalidInputError: ``older_than`` is negative.
            StorageError: an OS error while listing, or the store is closed.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidInputError("older_than", "must be a non-negative timedelta")
        self._check_open()
        cutoff = time.time() - older_than.total_seconds()
        try:
            return await _run(self._sweep, cutoff)
        except OSError as exc:
            raise _storage_error("sweep", exc, "*", None) from exc

    # -- internals ----------------------------------------------------------

    def _paths(self, firm_id: str, blob_id: str) -> tuple[Path, Path, Path]:
        validate_blob_id("firm_id", firm_id)
        validate_blob_id("blob_id", blob_id)
        self._check_open()
        fan = hashlib.sha256(blob_id.encode("ascii")).hexdigest()[:2]
        firm_dir = self._root / firm_id
        fan_dir = firm_dir / fan
        return firm_dir, fan_dir, fan_dir / blob_id

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("blob store is closed")

    @staticmethod
    def _unlink(final: Path, fan_dir: Path) -> None:
        os.unlink(final)
        _fsync_dir(fan_dir)

    def _sweep(self, cutoff: float) -> int:
        removed = 0
        candidates = [self._root]
        with os.scandir(self._root) as firms:
            for firm in firms:
                if firm.is_dir(follow_symlinks=False) and not firm.name.startswith("."):
                    with os.scandir(firm.path) as fans:
                        candidates.extend(
                            Path(fan.path) for fan in fans if fan.is_dir(follow_symlinks=False)
                        )
        for directory in candidates:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if not entry.name.startswith(PARTIAL_PREFIX):
                        continue
                    try:
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
                    except FileNotFoundError:  # its writer finished or aborted meanwhile
                        continue
        return removed

    def _check_case_sensitive(self) -> None:
        probe = self._root / f"{PARTIAL_PREFIX}case-{secrets.token_hex(4)}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:  # read-only root: nothing will be written, nothing can collide
            return
        try:
            os.close(fd)
            twin = probe.with_name(probe.name.upper())
            if os.path.lexists(twin):
                raise ConfigurationError(
                    "blob store root is on a case-insensitive filesystem; blob ids differing "
                    "only in case would collide"
                )
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
