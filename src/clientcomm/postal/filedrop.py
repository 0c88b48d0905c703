"""A postal provider for print shops: one folder per batch, dropped atomically.

Layout under ``root`` (the shop and clientcomm share it)::

    outbox/<firm>/<batch>/letters.pdf     the print file
    outbox/<firm>/<batch>/manifest.json   recipients, addresses, page ranges, options
    taken/<firm>/<batch>/                 the shop moved it here: in production
    cancelled/<firm>/<batch>/             cancelled before the shop took it
    status/<firm>/<batch>.json            written by the shop (optional):
                                          {"letters": {"<letter_id>": {"state": "posted",
                                          "tracking_id": "RR...DE", "detail": ""}}}
    .partial/                             batches being written (never read by the shop)

**Atomic drop**: a batch is written into a fresh folder under ``.partial/``
(each file written, flushed and ``fsync``-ed, then the folder ``fsync``-ed) and
then renamed into ``outbox/<firm>/`` in one ``rename``; the parent folder is
``fsync``-ed after. A crash at any point leaves either the whole batch in the
outbox or nothing there (a stray ``.partial/`` folder, removed by
:meth:`FileDropProvider.sweep`). A shop takes a batch by renaming its folder
into ``taken/<firm>/``; from then on ``cancel`` is refused. ``cancel`` renames
the folder into ``cancelled/<firm>/``, so exactly one of the shop and the
cancel wins.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError, StorageError
from clientcomm.letters.models import LetterProblem
from clientcomm.postal.base import (
    LetterState,
    LetterStatus,
    PostalBatch,
    PostalCapabilities,
    PostalOrder,
)
from clientcomm.postal.memory import batch_fingerprint
from clientcomm.postal.rules import check_batch

__all__ = ["MANIFEST_VERSION", "FileDropProvider", "manifest"]

MANIFEST_VERSION = 1
_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")


def manifest(batch: PostalBatch) -> dict[str, Any]:
    """The batch's manifest (what ``manifest.json`` holds)."""
    return {
        "version": MANIFEST_VERSION,
        "firm_id": batch.firm_id,
        "batch_id": batch.batch_id,
        "fingerprint": batch_fingerprint(batch),
        "print_file": "letters.pdf",
        "page_count": batch.print_file.page_count,
        "options": batch.options.to_dict(),
        "letters": [letter.to_dict() for letter in batch.letters],
    }


def _safe(field: str, value: str) -> str:
    if not _SAFE.match(value):
        raise InvalidInputError(field, "use letters, digits, '.', '_' and '-' only", value=value)
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class FileDropProvider:
    """:class:`~clientcomm.postal.base.PostalProvider` writing batches into a
    folder a print shop watches (see the module docs for the protocol).

    Args:
        root: the shared folder (created if missing).
        capabilities: what the shop offers every firm (default: colour, duplex,
            no registered mail, Germany only).
        per_firm: firms with other capabilities.
    """

    name = "filedrop"

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        capabilities: PostalCapabilities | None = None,
        per_firm: Mapping[str, PostalCapabilities] | None = None,
    ) -> None:
        self.root = Path(root)
        self._caps = capabilities or PostalCapabilities(
            registered=False, countries=frozenset({"DE"})
        )
        self._per_firm = dict(per_firm or {})
        for sub in ("outbox", "taken", "cancelled", "status", ".partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _dir(self, area: str, firm_id: str, batch_id: str) -> Path:
        return self.root / area / _safe("firm_id", firm_id) / _safe("batch_id", batch_id)

    async def capabilities(self, firm_id: str) -> PostalCapabilities:
        return self._per_firm.get(firm_id, self._caps)

    async def validate(self, batch: PostalBatch) -> tuple[LetterProblem, ...]:
        return check_batch(await self.capabilities(batch.firm_id), batch)

    async def order(self, batch: PostalBatch) -> PostalOrder:
        target = self._dir("outbox", batch.firm_id, batch.batch_id)
        fingerprint = batch_fingerprint(batch)
        existing = self._find(batch.firm_id, batch.batch_id)
        if existing is not None:
            if self._manifest(existing).get("fingerprint") != fingerprint:
                raise ConflictError(f"batch {batch.batch_id!r} was ordered with other content")
            return self._status(batch.firm_id, batch.batch_id)
        problems = check_batch(await self.capabilities(batch.firm_id), batch)
        if problems:
            raise InvalidInputError(
                "batch", "; ".join(str(p) for p in problems[:5]), value=len(problems)
            )
        try:
            await asyncio.to_thread(self._drop, batch, target)
        except FileExistsError:
            raise ConflictError(f"batch {batch.batch_id!r} is being ordered concurrently") from None
        except OSError as exc:
            raise StorageError(f"could not drop batch: {exc.strerror}") from exc
        return self._status(batch.firm_id, batch.batch_id)

    def _drop(self, batch: PostalBatch, target: Path) -> None:
        tmp = self.root / ".partial" / f"{batch.firm_id}-{batch.batch_id}-{secrets.token_hex(6)}"
        tmp.mkdir()
        try:
            _write(tmp / "letters.pdf", batch.print_file.data)
            body = json.dumps(manifest(batch), indent=2, ensure_ascii=False).encode()
            _write(tmp / "manifest.json", body)
            _fsync_dir(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            if self._find(batch.firm_id, batch.batch_id) is not None:
                raise FileExistsError(target)
            os.rename(tmp, target)  # atomic; fails if target exists and is not empty
            _fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _find(self, firm_id: str, batch_id: str) -> Path | None:
        for area in ("outbox", "taken", "cancelled"):
            d = self._dir(area, firm_id, batch_id)
            if (d / "manifest.json").is_file():
                return d
        return None

    def _manifest(self, folder: Path) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((folder / "manifest.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise StorageError(f"unreadable manifest in {folder.name}") from exc
        return data

    def _status(self, firm_id: str, batch_id: str) -> PostalOrder:
        folder = self._find(firm_id, batch_id)
        if folder is None:
            raise NotFoundError("postal_batch", batch_id)
        area = folder.parent.parent.name
        base = {
            "outbox": LetterState.ORDERED,
            "taken": LetterState.IN_PRODUCTION,
            "cancelled": LetterState.CANCELLED,
        }[area]
        reported: dict[str, Any] = {}
        status_file = self.root / "status" / firm_id / f"{batch_id}.json"
        if area == "taken" and status_file.is_file():
            try:
                reported = json.loads(status_file.read_bytes()).get("letters", {})
            except (OSError, ValueError, AttributeError):
                reported = {}  # a half-written status file: report what the folder says
        m = self._manifest(folder)
        letters = []
        for entry in m["letters"]:
            r = reported.get(entry["letter_id"], {})
            try:
                state = LetterState(r.get("state", base))
            except ValueError:
                state = base
            letters.append(
                LetterStatus(
                    entry["letter_id"],
                    entry["contact_id"],
                    state,
                    r.get("tracking_id"),
                    str(r.get("detail", "")),
                )
            )
        return PostalOrder(
            firm_id, batch_id, f"filedrop:{area}/{firm_id}/{batch_id}", tuple(letters)
        )

    async def cancel(self, firm_id: str, batch_id: str) -> PostalOrder:
        source = self._dir("outbox", firm_id, batch_id)
        target = self._dir("cancelled", firm_id, batch_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, target)
        except FileNotFoundError:
            folder = self._find(firm_id, batch_id)
            if folder is None:
                raise NotFoundError("postal_batch", batch_id) from None
            if folder.parent.parent.name == "taken":
                raise ConflictError(
                    f"batch {batch_id!r} is in production and cannot be cancelled"
                ) from None
            return self._status(firm_id, batch_id)  # cancelled already
        _fsync_dir(target.parent)
        return self._status(firm_id, batch_id)

    async def status(self, firm_id: str, batch_id: str) -> PostalOrder:
        return self._status(firm_id, batch_id)

    def take(self, firm_id: str, batch_id: str) -> Path:
        """What a print shop does to start production (for tests and shops in
        Python): move the batch to ``taken/``. Returns the new folder.

        Raises:
            NotFoundError: the batch is not in the outbox (cancelled, taken, missing).
        """
        target = self._dir("taken", firm_id, batch_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(self._dir("outbox", firm_id, batch_id), target)
        except FileNotFoundError:
            raise NotFoundError("postal_batch", batch_id) from None
        return target

    def report(self, firm_id: str, batch_id: str, letters: Mapping[str, Mapping[str, str]]) -> None:
        """What a print shop does to report progress: write the status file
        atomically (``letters``: letter id -> ``state``, ``tracking_id``, ``detail``)."""
        folder = self.root / "status" / _safe("firm_id", firm_id)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = self.root / ".partial" / f"status-{secrets.token_hex(6)}"
        _write(tmp, json.dumps({"letters": dict(letters)}).encode())
        os.replace(tmp, folder / f"{_safe('batch_id', batch_id)}.json")
        _fsync_dir(folder)

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove ``.partial/`` leftovers of crashed writers older than
        ``older_than`` seconds; returns how many."""
        removed = 0
        cutoff = time.time() - older_than
        for entry in (self.root / ".partial").iterdir():
            try:
                if entry.stat().st_mtime <= cutoff:
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
