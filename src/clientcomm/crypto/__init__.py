"""Envelope encryption: per-client keys, sealed values and streams, rotation and
crypto-shredding.

Start with :class:`Sealer` over a :class:`KeyProvider` (:class:`LocalKeyProvider`
in production, :class:`MemoryKeyProvider` in tests). ``docs/security.md``
describes the threat model and the format byte by byte.
"""

from clientcomm.crypto.context import FORMAT_VERSION, SealContext
from clientcomm.crypto.envelope import (
    OpenRequest,
    SealedStream,
    Sealer,
    SealRequest,
    SealReservation,
    decode_sealed,
    encode_sealed,
    sealed_key_version,
    stream_frame_size,
)
from clientcomm.crypto.keys import (
    DATA_KEY_SIZE,
    ClientKeyring,
    KeyProvider,
    key_version,
)
from clientcomm.crypto.local import (
    KEY_CHECK_ID,
    KEY_CHECK_KIND,
    KEY_RECORD_KIND,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    LocalKeyProvider,
    MasterKey,
    generate_master_key,
    load_master_key,
)
from clientcomm.crypto.memory import MemoryKeyProvider
from clientcomm.crypto.retention import (
    RETAIN_INDEFINITELY,
    RetentionRule,
    lawyer_retention,
    statutory_retention,
    tax_adviser_retention,
)
from clientcomm.crypto.rewrap import RewrapReport, rewrap_records
from clientcomm.crypto.stream import DEFAULT_CHUNK_SIZE, StreamKey, StreamOpener, StreamSealer

__all__ = [
    "DATA_KEY_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "KEY_CHECK_ID",
    "KEY_CHECK_KIND",
    "KEY_RECORD_KIND",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE_ENV",
    "RETAIN_INDEFINITELY",
    "ClientKeyring",
    "KeyProvider",
    "LocalKeyProvider",
    "MasterKey",
    "MemoryKeyProvider",
    "OpenRequest",
    "RetentionRule",
    "RewrapReport",
    "SealContext",
    "SealRequest",
    "SealReservation",
    "SealedStream",
    "Sealer",
    "StreamKey",
    "StreamOpener",
    "StreamSealer",
    "decode_sealed",
    "encode_sealed",
    "generate_master_key",
    "key_version",
    "lawyer_retention",
    "load_master_key",
    "rewrap_records",
    "sealed_key_version",
    "statutory_retention",
    "stream_frame_size",
    "tax_adviser_retention",
]
