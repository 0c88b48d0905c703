"""Envelope encryption: sealing values and streams for one client.

Every sealed value gets a fresh 256-bit data key, used directly as the
AES-256-GCM key with a random 96-bit nonce. The data key is wrapped by the
:class:`~clientcomm.crypto.keys.KeyProvider` under the client's current key
version, and a key commitment ``SHA-256("clientcomm.v1.key-commitment" 0x00
|| data key)`` is stored beside it and checked before decrypting. The
associated data binds format version, firm, client, object kind, object id and
field, so a value opened with another context fails with
:class:`~clientcomm.errors.IntegrityError` and never returns bytes.

Value envelope, format 1 (all integers big-endian)::

    0      u8    format version (1)
    1      u8    type (1 = value)
    2      u16   L, length of the key reference
    4      L     key reference from the provider (u32 key version first)
    4+L    32    key commitment
    36+L   12    nonce (random)
    48+L   n+16  AES-256-GCM ciphertext and tag

    associated data = "clientcomm.v1.value" 0x00 firm 0x00 client 0x00 kind
                      0x00 object id 0x00 field       (UTF-8)

The key reference is deliberately *not* covered by the body's tag, so
:meth:`Sealer.rewrap_many` can move a value to the newest key version without
touching its body; a forged reference cannot pass the provider's own
authentication, and a different data key cannot pass the commitment check.

Stream key, format 1 (the small companion of a chunked stream, see
:mod:`clientcomm.crypto.stream`)::

    0      u8    format version (1)
    1      u8    type (2 = stream key)
    2      u32   chunk size C
    6      32    key commitment
    38     7     nonce prefix (random)
    45     u16   L, length of the key reference
    47     L     key reference

    associated data of every chunk = bytes 0..44 | firm 0x00 client 0x00 kind
                                     0x00 object id 0x00 field
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, cast, overload

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.context import (
    COMMIT_LABEL,
    COMMITMENT_SIZE,
    FORMAT_VERSION,
    NONCE_SIZE,
    TAG_SIZE,
    TYPE_STREAM_KEY,
    TYPE_VALUE,
    U16,
    U32,
    VALUE_AAD_TAG,
    SealContext,
    all_fast_ok,
    key_commitment,
)
from clientcomm.crypto.keys import DATA_KEY_SIZE, MAX_KEY_REFERENCE, KeyProvider
from clientcomm.crypto.retention import RetentionRule, check_retention, resolve_retention
from clientcomm.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    STREAM_HEADER_SIZE,
    StreamKey,
    StreamOpener,
    StreamSealer,
    _open_only_frame,
    _sealed_only_frame,
    checked_key_parts,
    new_key_parts,
    open_buffer,
    seal_buffer,
)
from clientcomm.errors import IntegrityError, InvalidInputError, KeyDestroyedError

__all__ = [
    "Buffer",
    "ByteSource",
    "OpenRequest",
    "SealRequest",
    "SealReservation",
    "SealedStream",
    "Sealer",
    "decode_sealed",
    "encode_sealed",
    "sealed_key_version",
    "stream_frame_size",
]

_VALUE_HEAD = bytes((FORMAT_VERSION, TYPE_VALUE))
_AFTER_REF = COMMITMENT_SIZE + NONCE_SIZE + TAG_SIZE
_VALUE_HEAD_64 = _VALUE_HEAD + U16.pack(64)  # with the bundled providers' 64-byte references
_VALUE_MIN_64 = 4 + 64 + _AFTER_REF
_STREAM_KEY_MIN = STREAM_HEADER_SIZE + 2 + 4
_STREAM_KEY_HEAD = bytes((FORMAT_VERSION, TYPE_STREAM_KEY))
_STREAM_REF_START = STREAM_HEADER_SIZE + 2
_sha256 = hashlib.sha256

Buffer = bytes | bytearray | memoryview
"""Bytes-like values accepted as plaintext."""

ByteSource = AsyncIterable[Buffer] | Iterable[Buffer] | Buffer
"""Plaintext or sealed bytes for a stream: a bytes object, or a sync or async
iterable of bytes-like pieces of any size."""

# isinstance() with these tuples is much cheaper than with ``X | Y`` (built per call)
_BUFFERS = (bytes, bytearray, memoryview)
_SEQUENCES = (list, tuple)  # sync sources told apart without the ABC checks


@attrs.frozen(slots=True)
class SealRequest:
    """One value to seal: where it belongs and its plaintext (hidden from repr)."""

    context: SealContext
    plaintext: Buffer = attrs.field(repr=False)


@attrs.frozen(slots=True)
class OpenRequest:
    """One envelope to open with the context it was sealed for."""

    context: SealContext
    envelope: bytes = attrs.field(repr=False)


@attrs.frozen(slots=True)
class SealedStream:
    """The result of :meth:`Sealer.seal_stream`: the stream key to store with the
    referencing object, and the sealed frames to write (e.g. to
    ``BlobStore.put``). Iterate ``chunks`` exactly once."""

    key: bytes = attrs.field(repr=False)
    chunks: AsyncIterator[bytes] = attrs.field(repr=False)


def encode_sealed(sealed: bytes) -> str:
    """Envelope or stream key -> ASCII (standard base64), for JSON ``data``."""
    return base64.b64encode(sealed).decode("ascii")


def decode_sealed(text: str) -> bytes:
    """Inverse of :func:`encode_sealed`.

    Raises:
        IntegrityError: not valid base64.
    """
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError):
        raise IntegrityError("sealed value is not valid base64") from None


def _split_reference(sealed: bytes) -> tuple[int, int]:
    """(start, end) of the key reference inside an envelope or stream key.

    Raises:
        IntegrityError: not a format-1 envelope or stream key.
    """
    n = len(sealed)
    if n < 4 or sealed[0] != FORMAT_VERSION:
        raise IntegrityError("not a clientcomm envelope of a supported format")
    if sealed[1] == TYPE_VALUE:
        start = 4
        end = start + U16.unpack_from(sealed, 2)[0]
        if n < end + COMMITMENT_SIZE + NONCE_SIZE + TAG_SIZE or end - start < 4:
            raise IntegrityError("envelope is truncated")
    elif sealed[1] == TYPE_STREAM_KEY:
        if n < _STREAM_KEY_MIN:
            raise IntegrityError("stream key is truncated")
        start = STREAM_HEADER_SIZE + 2
        end = start + U16.unpack_from(sealed, STREAM_HEADER_SIZE)[0]
        if n != end or end - start < 4:
            raise IntegrityError("stream key has the wrong length")
    else:
        raise IntegrityError("unknown envelope type")
    return start, end


def sealed_key_version(sealed: bytes) -> int:
    """The client-key version an envelope or stream key is wrapped with.

    Raises:
        IntegrityError: malformed.
    """
    start, _ = _split_reference(sealed)
    version: int = U32.unpack_from(sealed, start)[0]
    return version


def stream_frame_size(stream_key: bytes) -> int:
    """Frame size of the blob sealed with ``stream_key`` (chunk size + 16): pass
    it as ``chunk_size`` to ``BlobStore.open`` for zero-copy opening.

    Raises:
        IntegrityError: malformed stream key.
    """
    if len(stream_key) < _STREAM_KEY_MIN or stream_key[:2] != bytes(
        (FORMAT_VERSION, TYPE_STREAM_KEY)
    ):
        raise IntegrityError("not a stream key")
    size: int = U32.unpack_from(stream_key, 2)[0]
    return size + TAG_SIZE


def _stream_key_request(
    context: SealContext, stream_key: bytes, key_owner: str | None
) -> tuple[tuple[str, bytes]]:
    """The ``unwrap_many`` item for a stream key: (key owner, wrapped key).

    Raises:
        InvalidInputError: no key owner.
        IntegrityError: not a well-formed stream key.
    """
    owner = key_owner if key_owner is not None else context.client_id
    if owner is None:
        raise InvalidInputError("key_owner", "a shared stream is opened with a client's key")
    n = len(stream_key)
    if (
        n < _STREAM_KEY_MIN
        or stream_key[:2] != _STREAM_KEY_HEAD
        or n != _STREAM_REF_START + U16.unpack_from(stream_key, STREAM_HEADER_SIZE)[0]
    ):
        _split_reference(stream_key)  # raises the precise error
        raise IntegrityError("not a stream key")
    return ((owner, stream_key[_STREAM_REF_START:]),)


def _unwrapped_stream_key(
    keys: Sequence[bytes | IntegrityError], stream_key: bytes
) -> tuple[bytes, bytes, AESGCM]:
    """The checked data key, header and cipher of a stream key, from the
    provider's answer.

    Raises:
        IntegrityError, KeyDestroyedError: unwrapping failed, or the key does
            not match the stream's commitment.
    """
    header = stream_key[:STREAM_HEADER_SIZE]
    if len(keys) == 1 and type(dk := keys[0]) is bytes and len(dk) == DATA_KEY_SIZE:
        # the usual answer; format, type and length of the stream key were
        # checked by _stream_key_request
        if not MIN_CHUNK_SIZE <= U32.unpack_from(header, 2)[0] <= MAX_CHUNK_SIZE:
            raise IntegrityError("stream chunk size out of range")
        if not hmac.compare_digest(
            _sha256(COMMIT_LABEL + dk).digest(), header[6 : 6 + COMMITMENT_SIZE]
        ):
            raise IntegrityError("data key does not match the stream's key commitment")
        return dk, header, AESGCM(dk)
    if len(keys) != 1:
        raise IntegrityError("the key provider returned the wrong number of keys")
    if isinstance(keys[0], IntegrityError):
        raise keys[0]
    return checked_key_parts(keys[0], header)


def _frame_size(header: bytes) -> int:
    size: int = U32.unpack_from(header, 2)[0]
    return size + TAG_SIZE


def _stream_key_ref(key: StreamKey, ref: bytes) -> bytes:
    if not 4 <= len(ref) <= MAX_KEY_REFERENCE:
        raise IntegrityError("the key provider returned a malformed key reference")
    return b"".join((key._header, U16.pack(len(ref)), ref))


async def _pump(
    update: Callable[[Any], list[bytes]], finalize: Callable[[], list[bytes]], source: object
) -> AsyncIterator[bytes]:
    """Feed the pieces of a sync or async iterable ``source`` to a stream core
    (:class:`StreamSealer` or :class:`StreamOpener`); yields what it returns."""
    if not isinstance(source, _SEQUENCES) and isinstance(source, AsyncIterable):
        async for piece in source:
            for out in update(piece):
                yield out
    else:
        for piece in _sync_pieces(source):
            for out in update(piece):
                yield out
    for out in finalize():
        yield out


def _sync_pieces(source: object) -> Iterable[Any]:
    if isinstance(source, _SEQUENCES):
        return source
    if isinstance(source, str) or not isinstance(source, Iterable):
        raise InvalidInputError("source", "must be bytes or a (sync or async) iterable of bytes")
    return source


class Sealer:
    """Seals and opens values and streams for clients (the envelope service).

    Args:
        provider: where the per-client keys live.
        clock: for retention checks (default: the system clock).
        retention: host rule ``(firm_id, client_id) -> retain_until``; see
            :mod:`clientcomm.crypto.retention`.
        chunk_size: default plaintext bytes per stream chunk (1 MiB).

    CPU work (AES, hashing) runs synchronously in the calling task; the provider
    is awaited once per batch. With the :class:`~clientcomm.crypto.local.LocalKeyProvider`
    each provider call is a short Store transaction of its own, so call these
    methods outside your own open transaction on the same SQLite or memory store.
    """

    def __init__(
        self,
        provider: KeyProvider,
        *,
        clock: Clock | None = None,
        retention: RetentionRule | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.provider = provider
        self.clock: Clock = clock or SystemClock()
        self.retention = retention
        StreamKey.generate(chunk_size)  # validates chunk_size
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"Sealer(provider={self.provider!r}, chunk_size={self.chunk_size})"

    # -- single values ----------------------------------------------------------
    async def seal(self, context: SealContext, plaintext: Buffer) -> bytes:
        """Seal one value for ``context.client_id``.

        Raises:
            InvalidInputError: ``context`` names no client, or plaintext is not bytes.
            KeyDestroyedError: the client was forgotten.
            StorageError: the key provider's backend failed.
        """
        return (await self.seal_many((SealRequest(context, plaintext),)))[0]

    async def seal_many(self, items: Sequence[SealRequest]) -> list[bytes]:
        """Seal many values with one provider call per firm in the batch (usually
        one); returns the envelopes in order.

        Raises:
            InvalidInputError: a context names no client, or a plaintext is not bytes.
            KeyDestroyedError: a client was forgotten (``context["client_ids"]``
                lists them; nothing was sealed).
            StorageError: the key provider's backend failed.
        """
        n = len(items)
        if n == 0:
            return []
        firm_id = items[0].context.firm_id
        rnd = os.urandom(44 * n)
        pairs: list[tuple[str, bytes]] = []
        append = pairs.append
        mixed = False
        o = 0
        for item in items:
            ctx = item.context
            client_id = ctx.client_id
            if client_id is None:
                raise InvalidInputError("context.client_id", "a sealed value needs a client")
            if ctx.firm_id != firm_id:
                mixed = True
            append((client_id, rnd[o : o + 32]))
            o += 44
        if mixed:
            return await self._seal_by_firm(items)
        refs = await self.provider.wrap_many(firm_id, pairs)
        if len(refs) != n:
            raise IntegrityError("the key provider returned the wrong number of key references")
        return _seal_values(items, pairs, refs, rnd)

    async def reserve(self, firm_id: str, client_ids: Sequence[str]) -> SealReservation:
        """Wrap fresh data keys for ``client_ids`` now (one provider call), to
        seal one value per entry later without awaiting anything.

        For a write that learns what it seals only inside its transaction
        (a comment's number is the conversation's, read in that transaction):
        the provider is called before the transaction opens, and
        :meth:`SealReservation.seal` is pure CPU inside it. The envelopes are
        the same as :meth:`seal_many` makes.

        Raises:
            InvalidInputError: an empty firm id or client id.
            KeyDestroyedError: a client was forgotten (nothing was reserved).
            StorageError: the key provider's backend failed.
        """
        if not isinstance(firm_id, str) or not firm_id:
            raise InvalidInputError("firm_id", "must be a non-empty string")
        ids = list(client_ids)
        for client_id in ids:
            if not isinstance(client_id, str) or not client_id:
                raise InvalidInputError("client_id", "a sealed value needs a client")
        rnd = os.urandom(44 * len(ids))
        pairs = [(c, rnd[44 * i : 44 * i + 32]) for i, c in enumerate(ids)]
        refs = await self.provider.wrap_many(firm_id, pairs) if pairs else []
        if len(refs) != len(pairs):
            raise IntegrityError("the key provider returned the wrong number of key references")
        return SealReservation(firm_id, pairs, list(refs), rnd)

    async def seal_batch(
        self,
        firm_id: str,
        kind: str,
        field: str,
        pairs: Sequence[tuple[str, str]],
        plaintexts: Sequence[Buffer],
    ) -> list[bytes]:
        """Seal one value per ``(client_id, object_id)`` pair, all of one firm,
        kind and field (a mailing's copies): the same envelopes, randomness
        drawn the same way, the same checks and errors as
        ``seal_many([SealRequest(ctx, p) for ctx, p in
        zip(SealContext.many(firm_id, kind, field, pairs), plaintexts)])``,
        without a context and a request object per value (the ids are checked
        batch-wise, and value by value only when that check does not pass).

        Raises:
            InvalidInputError: a part of a context is not valid (named as
                :class:`SealContext` names it), a plaintext is not bytes, or
                ``plaintexts`` does not have one value per pair.
            KeyDestroyedError: a client was forgotten (``context["client_ids"]``
                lists them; nothing was sealed).
            StorageError: the key provider's backend failed.
        """
        n = len(pairs)
        if len(plaintexts) != n:
            raise InvalidInputError("plaintexts", "must hold one value per pair")
        SealContext(firm_id, None, kind, "-", field)  # validates the shared parts
        clients = [client_id for client_id, _ in pairs]
        if not (all_fast_ok(clients) and all_fast_ok([oid for _, oid in pairs])):
            SealContext.many(firm_id, kind, field, pairs)  # raises the precise error
            if None in clients:
                raise InvalidInputError("context.client_id", "a sealed value needs a client")
        if n == 0:
            return []
        rnd = os.urandom(44 * n)
        keys = [rnd[o : o + 32] for o in range(0, 44 * n, 44)]
        refs = await self.provider.wrap_many(firm_id, list(zip(clients, keys, strict=True)))
        if len(refs) != n:
            raise IntegrityError("the key provider returned the wrong number of key references")
        # associated data: tag 0x00 firm 0x00 client 0x00 kind 0x00 object id 0x00 field
        head = VALUE_AAD_TAG + "\x00" + firm_id + "\x00"
        middle = "\x00" + kind + "\x00"
        tail = "\x00" + field
        aads = [
            (head + client_id + middle + object_id + tail).encode()
            for client_id, object_id in pairs
        ]
        return _envelopes(keys, refs, rnd, aads, plaintexts)

    async def _seal_by_firm(self, items: Sequence[SealRequest]) -> list[bytes]:
        out: list[bytes] = [b""] * len(items)
        by_firm: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_firm.setdefault(item.context.firm_id, []).append(i)
        for indexes in by_firm.values():
            sealed = await self.seal_many([items[i] for i in indexes])
            for i, env in zip(indexes, sealed, strict=True):
                out[i] = env
        return out

    async def open(self, context: SealContext, envelope: bytes) -> bytes:
        """Open one envelope sealed for ``context``.

        Raises:
            IntegrityError: tampered, truncated, sealed for another firm, client,
                object or field, or the key failed to unwrap.
            KeyDestroyedError: the client was forgotten.
            InvalidInputError: ``context`` names no client.
            StorageError: the key provider's backend failed.
        """
        return (await self.open_many((OpenRequest(context, envelope),)))[0]

    @overload
    async def open_many(
        self, items: Sequence[OpenRequest], *, return_exceptions: Literal[False] = False
    ) -> list[bytes]: ...

    @overload
    async def open_many(
        self, items: Sequence[OpenRequest], *, return_exceptions: Literal[True]
    ) -> list[bytes | IntegrityError]: ...

    async def open_many(
        self, items: Sequence[OpenRequest], *, return_exceptions: bool = False
    ) -> list[bytes] | list[bytes | IntegrityError]:
        """Open many envelopes with one provider call per firm.

        With ``return_exceptions=True`` an envelope that fails yields its
        :class:`~clientcomm.errors.IntegrityError` (or ``KeyDestroyedError``) in
        its place instead of raising, so one forgotten client does not hide
        the others' values.

        Raises:
            IntegrityError, KeyDestroyedError: as :meth:`open` (first failure,
                unless ``return_exceptions``).
            InvalidInputError: a context names no client.
            StorageError: the key provider's backend failed.
        """
        n = len(items)
        if n == 0:
            return []
        firm_id = items[0].context.firm_id
        results: list[bytes | IntegrityError]
        if any(item.context.firm_id != firm_id for item in items):
            results = [b""] * n
            by_firm: dict[str, list[int]] = {}
            for i, item in enumerate(items):
                by_firm.setdefault(item.context.firm_id, []).append(i)
            for indexes in by_firm.values():
                part = await self.open_many([items[i] for i in indexes], return_exceptions=True)
                for i, res in zip(indexes, part, strict=True):
                    results[i] = res
        else:
            parsed: list[int | IntegrityError] = []
            pairs: list[tuple[str, bytes]] = []
            add_parsed = parsed.append
            add_pair = pairs.append
            u16 = U16.unpack_from
            for item in items:
                client_id = item.context.client_id
                if client_id is None:
                    raise InvalidInputError("context.client_id", "a sealed value needs a client")
                env = item.envelope
                if env[:4] == _VALUE_HEAD_64 and len(env) >= _VALUE_MIN_64:  # the usual shape
                    add_parsed(68)
                    add_pair((client_id, env[4:68]))
                    continue
                try:
                    if env[0] != FORMAT_VERSION or env[1] != TYPE_VALUE:
                        raise IntegrityError("not a clientcomm value envelope")
                    end: int = 4 + u16(env, 2)[0]
                    if len(env) < end + _AFTER_REF:
                        raise IntegrityError("envelope is truncated")
                except (IntegrityError, IndexError, TypeError, struct.error):
                    add_parsed(IntegrityError("not a clientcomm value envelope of format 1"))
                    add_pair((client_id, b""))
                    continue
                add_parsed(end)
                add_pair((client_id, env[4:end]))
            keys = await self.provider.unwrap_many(firm_id, pairs)
            if len(keys) != n:
                raise IntegrityError("the key provider returned the wrong number of keys")
            results, first = _open_values(items, parsed, keys)
            if first is not None and not return_exceptions:
                raise first
            return results
        if not return_exceptions:
            for res in results:
                if isinstance(res, IntegrityError):
                    raise res
        return results

    # -- streams ----------------------------------------------------------------
    def new_stream_key(self, *, chunk_size: int | None = None) -> StreamKey:
        """A fresh data key for one stream (see :class:`StreamKey`).

        Raises:
            InvalidInputError: bad ``chunk_size``.
        """
        return StreamKey.generate(self.chunk_size if chunk_size is None else chunk_size)

    async def wrap_stream_keys(
        self, firm_id: str, items: Sequence[tuple[str, StreamKey]]
    ) -> list[bytes]:
        """Wrap stream keys for clients: each ``(client_id, key)`` becomes a
        stream key reference that only that client's key opens. One provider
        call for the batch. A shared stream is wrapped once per recipient.

        Raises:
            KeyDestroyedError: a client was forgotten.
            StorageError: the key provider's backend failed.
        """
        refs = await self.provider.wrap_many(
            firm_id, [(client_id, key.data_key) for client_id, key in items]
        )
        if len(refs) != len(items):
            raise IntegrityError("the key provider returned the wrong number of key references")
        return [_stream_key_ref(key, ref) for (_, key), ref in zip(items, refs, strict=True)]

    async def seal_chunks(
        self, context: SealContext, key: StreamKey, source: ByteSource
    ) -> AsyncIterator[bytes]:
        """Seal a stream under ``key``; yields the frames (concatenated, they
        are the blob). ``context.client_id`` may be ``None`` for a shared
        stream. Memory stays bounded by about one chunk plus the pieces the
        source yields; a bytes-like ``source`` is read through a view and
        sealed one frame per step (do not change a mutable one meanwhile).

        Raises:
            InvalidInputError: ``key`` was already used, or a piece is not bytes.
        """
        if isinstance(source, _SEQUENCES) and len(source) == 1:
            source = source[0]  # one piece: the whole plaintext
        if isinstance(source, _BUFFERS):
            for frame in seal_buffer(key, context, source):
                yield frame
            return
        core = StreamSealer(key, context)
        async for frame in _pump(core.update, core.finalize, source):
            yield frame

    async def seal_stream(self, context: SealContext, source: ByteSource) -> SealedStream:
        """Seal a stream for ``context.client_id`` with a fresh key: wraps the
        key now (one provider call) and returns it with the frames to write.

        Raises:
            InvalidInputError: ``context`` names no client.
            KeyDestroyedError: the client was forgotten.
            StorageError: the key provider's backend failed.
        """
        client_id = context.client_id
        if client_id is None:
            raise InvalidInputError(
                "context.client_id",
                "seal_stream needs a client; for shared streams use new_stream_key,"
                " seal_chunks and wrap_stream_keys",
            )
        chunk_size = self.chunk_size
        data_key, header, cipher = new_key_parts(chunk_size)
        refs = await self.provider.wrap_many(context.firm_id, ((client_id, data_key),))
        if len(refs) != 1:
            raise IntegrityError("the key provider returned the wrong number of key references")
        ref = refs[0]
        if not 4 <= len(ref) <= MAX_KEY_REFERENCE:
            raise IntegrityError("the key provider returned a malformed key reference")
        chunks: AsyncIterator[bytes]
        if type(source) is bytes and len(source) <= chunk_size:  # one frame
            chunks = _sealed_only_frame(cipher, header, context, source)
        else:
            key = StreamKey._from_parts(data_key, header, cipher)
            chunks = self.seal_chunks(context, key, source)
        return SealedStream(header + U16.pack(len(ref)) + ref, chunks)

    async def open_stream_key(
        self, context: SealContext, stream_key: bytes, *, key_owner: str | None = None
    ) -> StreamKey:
        """Unwrap a stream key reference with ``key_owner``'s key (default:
        ``context.client_id``) and check its commitment.

        Raises:
            IntegrityError: malformed, tampered, or another client's reference.
            KeyDestroyedError: the key owner was forgotten.
            InvalidInputError: no key owner.
        """
        request = _stream_key_request(context, stream_key, key_owner)
        keys = await self.provider.unwrap_many(context.firm_id, request)
        return StreamKey._from_parts(*_unwrapped_stream_key(keys, stream_key))

    async def open_stream(
        self,
        context: SealContext,
        stream_key: bytes,
        chunks: ByteSource,
        *,
        key_owner: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Open a sealed stream; yields plaintext chunks. Read the blob with
        ``chunk_size=stream_frame_size(stream_key)`` to avoid copying; a
        bytes-like ``chunks`` (the whole blob) is read through a view and
        opened one frame per step.

        Plaintext is yielded as frames authenticate; a failure (raised before
        the end of the stream) means the data yielded so far must be discarded.

        Raises:
            IntegrityError: the key or any frame fails to authenticate, or the
                stream is truncated, extended, reordered or spliced.
            KeyDestroyedError: the key owner was forgotten.
        """
        request = _stream_key_request(context, stream_key, key_owner)
        keys = await self.provider.unwrap_many(context.firm_id, request)
        data_key, header, cipher = _unwrapped_stream_key(keys, stream_key)
        chunk_size: int = U32.unpack_from(header, 2)[0]
        if isinstance(chunks, _SEQUENCES) and len(chunks) == 1:
            chunks = chunks[0]  # one piece: the whole blob
        if type(chunks) is bytes and TAG_SIZE <= len(chunks) <= chunk_size + TAG_SIZE:
            yield _open_only_frame(cipher, header, context, chunks)  # a one-frame blob
            return
        key = StreamKey._from_parts(data_key, header, cipher)
        if isinstance(chunks, _BUFFERS):
            for plain in open_buffer(key, context, chunks):
                yield plain
            return
        core = StreamOpener(key, context)
        async for plain in _pump(core.update, core.finalize, chunks):
            yield plain

    # -- rotation, re-wrapping, forgetting -------------------------------------------
    async def rotate_client_key(self, firm_id: str, client_id: str) -> int:
        """Start a new key version for the client (new seals use it); returns it.

        Raises:
            KeyDestroyedError: the client was forgotten.
        """
        return await self.provider.rotate(firm_id, client_id)

    async def rewrap_many(
        self, firm_id: str, items: Sequence[tuple[str, bytes]]
    ) -> list[bytes | IntegrityError]:
        """Move envelopes and stream keys to their client's newest key version.

        Each item is ``(client_id, sealed)`` where ``client_id`` owns the key
        that wraps it. Only the key reference changes; bodies are not
        re-encrypted. Items already on the newest version are returned as
        they are (the same object). An item that cannot be unwrapped yields
        its error instead (e.g. ``KeyDestroyedError`` for forgotten clients).

        Raises:
            StorageError: the key provider's backend failed.
        """
        out: list[bytes | IntegrityError] = [sealed for _, sealed in items]
        spans: dict[int, tuple[int, int]] = {}
        for i, (_client_id, sealed) in enumerate(items):
            try:
                spans[i] = _split_reference(sealed)
            except IntegrityError as exc:
                out[i] = exc
        clients = sorted({items[i][0] for i in spans})
        current = await self.provider.current_versions(firm_id, clients) if clients else {}
        todo = [
            i
            for i, (start, _) in spans.items()
            if current.get(items[i][0]) != U32.unpack_from(items[i][1], start)[0]
        ]
        if not todo:
            return out
        keys = await self.provider.unwrap_many(
            firm_id,
            [(items[i][0], items[i][1][spans[i][0] : spans[i][1]]) for i in todo],
        )
        ready: list[tuple[int, bytes]] = []
        for i, dk in zip(todo, keys, strict=True):
            if isinstance(dk, IntegrityError):
                out[i] = dk
                continue
            sealed = items[i][1]
            start, end = spans[i]
            commitment = key_commitment(dk)
            at = end if sealed[1] == TYPE_VALUE else 6
            if not hmac.compare_digest(commitment, sealed[at : at + COMMITMENT_SIZE]):
                out[i] = IntegrityError("data key does not match the key commitment")
                continue
            ready.append((i, dk))
        if not ready:
            return out
        try:
            refs = await self.provider.wrap_many(firm_id, [(items[i][0], dk) for i, dk in ready])
        except KeyDestroyedError as exc:  # forgotten between unwrap and wrap
            gone = set(exc.context.get("client_ids", ()))
            ready = [(i, dk) for i, dk in ready if items[i][0] not in gone]
            for i, (client_id, _) in enumerate(items):
                if client_id in gone and not isinstance(out[i], IntegrityError):
                    out[i] = KeyDestroyedError("the client's keys were destroyed")
            if not ready:
                return out
            refs = await self.provider.wrap_many(firm_id, [(items[i][0], dk) for i, dk in ready])
        for (i, _), ref in zip(ready, refs, strict=True):
            sealed = items[i][1]
            start, end = spans[i]
            out[i] = sealed[: start - 2] + U16.pack(len(ref)) + ref + sealed[end:]
        return out

    async def rewrap(self, firm_id: str, client_id: str, sealed: bytes) -> bytes:
        """:meth:`rewrap_many` for one item.

        Raises:
            IntegrityError, KeyDestroyedError: the item cannot be unwrapped.
        """
        (res,) = await self.rewrap_many(firm_id, [(client_id, sealed)])
        if isinstance(res, IntegrityError):
            raise res
        return res

    async def forget_client(self, firm_id: str, client_id: str, *, override: bool = False) -> bool:
        """Crypto-shred a client: destroy all its key versions, so none of its
        sealed values or streams opens again (other clients are unaffected).
        Returns whether keys existed.

        The retention rule is asked first; while it says the client's records
        must be kept, forgetting is refused unless ``override=True``.

        Raises:
            RetentionError: records must still be kept.
            StorageError: the key provider's backend failed.
        """
        if self.retention is not None:
            until: datetime | None = await resolve_retention(self.retention, firm_id, client_id)
            check_retention(
                until, self.clock.now(), firm_id=firm_id, client_id=client_id, override=override
            )
        return await self.provider.forget(firm_id, client_id)


class SealReservation:
    """Data keys wrapped ahead for one firm's clients (:meth:`Sealer.reserve`);
    each seals exactly one value, in :meth:`seal`, without awaiting."""

    __slots__ = ("_firm_id", "_free", "_pairs", "_refs", "_rnd")

    def __init__(
        self, firm_id: str, pairs: list[tuple[str, bytes]], refs: list[bytes], rnd: bytes
    ) -> None:
        self._firm_id = firm_id
        self._free: dict[str, list[int]] = {}
        for i, (client_id, _) in enumerate(pairs):
            self._free.setdefault(client_id, []).append(i)
        self._pairs = pairs
        self._refs = refs
        self._rnd = rnd

    def __repr__(self) -> str:
        left = sum(len(v) for v in self._free.values())
        return f"SealReservation(firm_id={self._firm_id!r}, unused={left})"

    def seal(self, context: SealContext, plaintext: Buffer) -> bytes:
        """Seal one value for ``context`` with a key reserved for its client
        (each key once).

        Raises:
            InvalidInputError: ``context`` is of another firm, names no client
                or one with no unused key left; the plaintext is not bytes.
        """
        if context.firm_id != self._firm_id:
            raise InvalidInputError("context.firm_id", "is not the firm of the reservation")
        if not isinstance(plaintext, _BUFFERS):
            raise InvalidInputError("plaintext", "must be bytes-like")
        free = self._free.get(context.client_id or "")
        if not free:
            raise InvalidInputError(
                "context.client_id", "has no unused reserved key", value=context.client_id
            )
        i = free.pop(0)
        return _seal_values(
            (SealRequest(context, plaintext),),
            (self._pairs[i],),
            (self._refs[i],),
            self._rnd[44 * i : 44 * i + 44],
        )[0]


def _seal_values(
    items: Sequence[SealRequest],
    pairs: Sequence[tuple[str, bytes]],
    refs: Sequence[bytes],
    rnd: bytes,
) -> list[bytes]:
    tag = VALUE_AAD_TAG
    aads = [
        "\x00".join(
            (
                tag,
                item.context.firm_id,
                client_id,
                item.context.kind,
                item.context.object_id,
                item.context.field,
            )
        ).encode()
        for item, (client_id, _) in zip(items, pairs, strict=True)
    ]
    return _envelopes([dk for _, dk in pairs], refs, rnd, aads, [item.plaintext for item in items])


def _envelopes(
    keys: Sequence[bytes],
    refs: Sequence[bytes],
    rnd: bytes,
    aads: Sequence[bytes],
    plaintexts: Sequence[Buffer],
) -> list[bytes]:
    """Value envelopes: plaintext ``i`` under data key ``i`` (wrapped as key
    reference ``i``) with associated data ``i`` and the nonce at
    ``44 * i + 32`` of ``rnd`` (each value's 32-byte key, then its nonce)."""
    out: list[bytes] = []
    append = out.append
    sha256 = _sha256
    label = COMMIT_LABEL
    gcm = AESGCM
    join = b"".join
    head64 = _VALUE_HEAD_64
    o = 32
    for dk, ref, aad, plain in zip(keys, refs, aads, plaintexts, strict=True):
        nonce = rnd[o : o + 12]
        o += 44
        try:
            body = gcm(dk).encrypt(nonce, plain, aad)
        except TypeError:
            raise InvalidInputError("plaintext", "must be bytes-like") from None
        commitment = sha256(label + dk).digest()
        if len(ref) == 64:
            append(join((head64, ref, commitment, nonce, body)))
        else:
            if not 4 <= len(ref) <= MAX_KEY_REFERENCE:
                raise IntegrityError("the key provider returned a malformed key reference")
            append(join((_VALUE_HEAD, U16.pack(len(ref)), ref, commitment, nonce, body)))
    return out


def _open_values(
    items: Sequence[OpenRequest],
    parsed: Sequence[int | IntegrityError],
    keys: Sequence[bytes | IntegrityError],
) -> tuple[list[bytes | IntegrityError], IntegrityError | None]:
    """The opened values (or errors, in place) and the first error."""
    out: list[bytes | IntegrityError] = []
    append = out.append
    sha256 = _sha256
    label = COMMIT_LABEL
    tag = VALUE_AAD_TAG
    gcm = AESGCM
    compare = hmac.compare_digest
    first: IntegrityError | None = None
    for item, end, dk in zip(items, parsed, keys, strict=True):
        if type(end) is int and not isinstance(dk, IntegrityError):
            env = item.envelope
            if len(dk) == DATA_KEY_SIZE and compare(
                sha256(label + dk).digest(), env[end : end + 32]
            ):
                ctx = item.context
                aad = "\x00".join(
                    (tag, ctx.firm_id, ctx.client_id, ctx.kind, ctx.object_id, ctx.field)  # type: ignore[arg-type]
                ).encode()
                body = env[end + 44 :] if len(env) < 65536 else memoryview(env)[end + 44 :]
                try:
                    append(gcm(dk).decrypt(env[end + 32 : end + 44], body, aad))
                    continue
                except InvalidTag:
                    error = IntegrityError(
                        "envelope failed authentication (tampered, or sealed for another"
                        " client, object or field)"
                    )
            else:
                error = IntegrityError("data key does not match the envelope's key commitment")
        elif isinstance(end, IntegrityError):
            error = end
        else:
            error = cast(IntegrityError, dk)  # end is an offset, so dk is the error
        append(error)
        if first is None:
            first = error
    return out, first
