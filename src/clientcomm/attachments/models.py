"""Public values of attachments: what a host passes in, what a reader sees, and
the stored descriptor of one copy's attachment (blob, mode, wrapped stream key)."""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import attrs

from clientcomm.crypto.envelope import decode_sealed, encode_sealed
from clientcomm.errors import IntegrityError
from clientcomm.records import converter

__all__ = [
    "AttachmentInfo",
    "AttachmentInput",
    "AttachmentMode",
    "AttachmentScanner",
    "StagedAttachment",
    "StoredAttachment",
]


class AttachmentMode(enum.StrEnum):
    PER_COPY = "per_copy"
    SHARED = "shared"


@attrs.frozen
class AttachmentInput:
    """A file to attach: ``content`` is the bytes, or a path to read (streamed).

    Build with :meth:`from_bytes` or :meth:`from_path`.
    """

    filename: str
    content: bytes | Path = attrs.field(repr=False)
    content_type: str = "application/octet-stream"

    @classmethod
    def from_bytes(
        cls, filename: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> AttachmentInput:
        return cls(filename, bytes(data), content_type)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> AttachmentInput:
        p = Path(path)
        return cls(filename or p.name, p, content_type)


class AttachmentScanner(Protocol):
    """A host's check of every attachment before anything is stored (a virus
    scanner, a policy on types): ``await scanner(filename, content_type,
    chunks)``, where ``chunks`` yields the file's bytes (already within the size
    limit and matching the declared type). Return to accept; **raise to
    refuse**: any exception (an outage too, so the check fails closed) becomes
    an :class:`~clientcomm.errors.InvalidInputError` naming the attachment's
    field, with the scanner's exception as ``__cause__``. Reading ``chunks`` is
    optional; what the scanner leaves unread is still checked. A plain
    ``async def scan(filename, content_type, chunks) -> None`` will do.
    """

    async def __call__(
        self, filename: str, content_type: str, chunks: AsyncIterator[bytes], /
    ) -> None: ...


@attrs.frozen
class AttachmentInfo:
    """What a reader sees of an attachment."""

    id: str
    filename: str
    size: int
    content_type: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "content_type": self.content_type,
        }

    @classmethod
    def from_dict(cls, d: Any) -> AttachmentInfo:
        return cls(d["id"], d["filename"], int(d["size"]), d["content_type"])


@attrs.frozen
class StoredAttachment:
    """An attachment of one message copy: the blob and the stream key wrapped
    for the message's client (or, staged, for a mailing's staging key)."""

    info: AttachmentInfo
    blob_id: str
    mode: AttachmentMode
    stream_key: bytes = attrs.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        if self.sealed_info:
            head: dict[str, Any] = {"id": self.info.id}
        else:
            head = self.info.to_dict()
        return {
            **head,
            "blob_id": self.blob_id,
            "mode": self.mode.value,
            "stream_key": encode_sealed(self.stream_key),
        }

    @classmethod
    def from_dict(cls, d: Any) -> StoredAttachment:
        if not isinstance(d["id"], str) or not isinstance(d["blob_id"], str):
            raise TypeError("attachment ids must be text")
        info = (
            AttachmentInfo.from_dict(d) if "filename" in d else AttachmentInfo(d["id"], "", 0, "")
        )
        return cls(info, d["blob_id"], AttachmentMode(d["mode"]), decode_sealed(d["stream_key"]))

    # -- bound into the referencing record's sealed value (see clientcomm.records.bound)
    @property
    def sealed_info(self) -> bool:
        """Whether the descriptor (file name, size, media type) is held only in
        the referencing record's sealed value (the stored form since 0.2; an
        empty file name is never valid, so it marks the stripped form:
        :meth:`stripped`)."""
        info = self.info
        return info.filename == "" and info.size == 0 and info.content_type == ""

    def stripped(self) -> StoredAttachment:
        """The form stored in clear: id, blob, mode and stream key only."""
        return attrs.evolve(self, info=AttachmentInfo(self.info.id, "", 0, ""))

    def bound(self) -> dict[str, Any]:
        """What the referencing record's sealed value holds of this attachment."""
        return {**self.info.to_dict(), "blob_id": self.blob_id, "mode": self.mode.value}

    def authenticated(self, bound: Any) -> StoredAttachment:
        """This stored attachment with the descriptor from ``bound`` (its entry
        in the opened sealed value), checked against what is stored in clear.

        Raises:
            IntegrityError: the blob, mode or id (or a clear descriptor, for
                records that still hold one) differ from the sealed ones.
        """
        try:
            info = AttachmentInfo.from_dict(bound)
            blob_id, mode = bound["blob_id"], bound["mode"]
        except (KeyError, TypeError, ValueError):
            raise IntegrityError("sealed attachment descriptor is malformed") from None
        clear = self.info if not self.sealed_info else attrs.evolve(info, id=self.info.id)
        if blob_id != self.blob_id or mode != self.mode.value or clear != info:
            raise IntegrityError(
                "attachment reference does not match its sealed descriptor (edited or moved?)",
                attachment_id=self.info.id,
            )
        return attrs.evolve(self, info=info)


StagedAttachment = StoredAttachment
"""A mailing's attachment, sealed (per copy) or wrapped (shared) for the
mailing's staging key: the same shape as a copy's attachment."""


# Stored flat, as {id, filename, size, content_type, blob_id, mode, stream_key}
# (the layout rows have had since 0.1), inside whichever record holds them.
converter.register_unstructure_hook(StoredAttachment, StoredAttachment.to_dict)
converter.register_structure_hook(StoredAttachment, lambda d, _: StoredAttachment.from_dict(d))
converter.register_unstructure_hook(AttachmentInfo, AttachmentInfo.to_dict)
converter.register_structure_hook(AttachmentInfo, lambda d, _: AttachmentInfo.from_dict(d))
