"""Benchmark: envelope sealing/opening against raw AES-GCM on the same bytes.

Run: ``PYTHONPATH=src .venv/bin/python bench/crypto.py`` (or via ``make bench``).
Prints one JSON object per figure to stdout, human-readable lines to stderr.

Figures (throughput ratios are baseline_time / our_time, higher is better):

* ``seal_2kb_floor`` / ``open_2kb_floor``: batches of 1,000 values of 2 KB
  for 1,000 different clients (the mass-mailing shape) through the
  *required-work floor* (``required_work_seal`` / ``required_work_open``: the
  plainest single loop doing exactly what format 1 needs per value, with the
  MemoryKeyProvider's client keys; its envelopes open with the library and
  vice versa), against ``[aes.encrypt(os.urandom(12), v, None) for v in
  values]`` (and ``aes.decrypt`` for opening) with one pre-built ``AESGCM``
  key. No target of their own; measured first, because they set the next two.
* ``seal_2kb`` / ``open_2kb``: the same batches through ``Sealer.seal_many`` /
  ``open_many`` with the MemoryKeyProvider, against the same raw baseline.
  Their target is relative, not fixed: 0.9 x the ratio of their own
  ``*_floor`` line measured in the same run (``FLOOR_SHARE``; the row's
  ``note`` says so). A fixed ratio is not reachable for 2 KB values: the work
  format 1 requires per value (fresh data key, key commitment, wrap) already
  costs about three times the raw call, so the floor is the bar and the
  library must stay within 10 % of it.
* ``seal_1mb`` / ``open_1mb``: a 1 MB value through the streaming API (how
  attachments and documents are sealed; default 1 MiB chunks), against one
  ``aes.encrypt`` / ``aes.decrypt`` call over the whole 1 MB.
* ``seal_1mb_chunk64k`` / ``..._chunk256k`` / ``..._chunk1024k`` (and open):
  the same with these chunk sizes (informational; 1024k is the default).
* ``seal_1mb_value`` / ``open_1mb_value``: the same 1 MB as a single-value
  envelope (informational; no target).
* ``seal_2kb_local`` / ``open_2kb_local``: 2 KB batches with the
  LocalKeyProvider on a MemoryStore (includes the per-batch key-record read;
  informational).
* ``stream_200mb_peak_mem``: peak RSS growth of a child process sealing and
  then opening a 200 MB stream (target < 64 MB).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from clientcomm.crypto import (
    LocalKeyProvider,
    MasterKey,
    MemoryKeyProvider,
    OpenRequest,
    SealContext,
    Sealer,
    SealRequest,
)
from clientcomm.crypto.context import COMMIT_LABEL, VALUE_AAD_TAG
from clientcomm.crypto.keys import ClientKeyring
from clientcomm.storage.memory import MemoryStore

N_SMALL = 1000
SMALL = 2048
BIG = 1 << 20
REPEAT = 25
FLOOR_SHARE = 0.9  # seal_2kb / open_2kb target: this share of their floor's ratio
_VALUE_HEAD_64 = b"\x01\x01\x00\x40"  # format 1, value, 64-byte key reference
_U32 = struct.Struct(">I")


def emit(
    name: str,
    value: float,
    unit: str,
    baseline: float | None,
    ratio: float | None,
    target: float | None,
    **extra: Any,
) -> None:
    row = {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 4),
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        **extra,
    }
    print(json.dumps(row), flush=True)
    shown = f"{name:24s} {value:10.3f} {unit:6s}"
    if baseline is not None and ratio is not None:
        shown += f"  raw {baseline:10.3f}  ratio {ratio:5.3f}"
    if target is not None:
        shown += f"  target {target}"
    print(shown, file=sys.stderr, flush=True)


async def interleaved(
    ours: Callable[[], Awaitable[Any]], raw: Callable[[], Any], repeat: int = REPEAT
) -> tuple[float, float]:
    """Best-of-N seconds of ours (awaited inside the running loop, so no per-call
    event-loop overhead is counted) and raw, measured alternately."""
    await ours()
    raw()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await ours()
        a.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw()
        b.append(time.perf_counter() - t0)
    return min(a), min(b)


async def small_figures(sealer: Sealer, suffix: str) -> None:
    values = [os.urandom(SMALL) for _ in range(N_SMALL)]
    requests = [
        SealRequest(SealContext("firm-1", f"client-{i:05d}", "message", f"m-{i:08d}", "body"), v)
        for i, v in enumerate(values)
    ]
    raw = AESGCM(AESGCM.generate_key(256))
    urandom = os.urandom

    def raw_encrypt() -> list[bytes]:
        encrypt = raw.encrypt
        return [encrypt(urandom(12), v, None) for v in values]

    async def seal() -> list[bytes]:
        return await sealer.seal_many(requests)

    envelopes = await seal()
    opens = [OpenRequest(r.context, e) for r, e in zip(requests, envelopes, strict=True)]
    nonces = [urandom(12) for _ in values]
    cts = [raw.encrypt(n, v, None) for n, v in zip(nonces, values, strict=True)]

    def raw_decrypt() -> list[bytes]:
        decrypt = raw.decrypt
        return [decrypt(n, c, None) for n, c in zip(nonces, cts, strict=True)]

    async def open_() -> list[bytes]:
        return await sealer.open_many(opens)

    assert await open_() == values
    # the floor first: its ratios set the targets of seal_2kb / open_2kb
    floors: dict[str, float] = {}
    if isinstance(sealer.provider, MemoryKeyProvider):
        floors = await floor_figures(sealer, requests, opens, raw_encrypt, raw_decrypt)
    per = N_SMALL * SMALL / 1e6
    for op, ours_fn, raw_fn, extra in (
        ("seal", seal, raw_encrypt, {}),
        ("open", open_, raw_decrypt, {"baseline_op": "AESGCM.decrypt"}),
    ):
        ours, base = await interleaved(ours_fn, raw_fn)
        floor = floors.get(op)
        if floor is not None:
            extra = {
                **extra,
                "note": f"target = {FLOOR_SHARE} x ratio of {op}_2kb_floor measured in "
                "this run (the plainest code doing the required work)",
            }
        emit(
            f"{op}_2kb{suffix}",
            per / ours,
            "MB/s",
            per / base,
            base / ours,
            None if floor is None else round(FLOOR_SHARE * floor, 3),
            us_per_value=round(ours / N_SMALL * 1e6, 3),
            **extra,
        )


def required_work_seal(
    keyrings: Mapping[str, ClientKeyring], batch: Sequence[tuple[SealContext, bytes]]
) -> list[bytes]:
    """The plainest code doing exactly the work format 1 requires per value:
    a fresh data key and nonce (one getrandom call per batch, like
    ``seal_many``), the key commitment, the client-key wrap, the associated
    data built from the context, AES-256-GCM under the data key, and the
    envelope bytes. No input checks, no provider call, one loop."""
    sha256 = hashlib.sha256
    join = b"".join
    rnd = os.urandom(56 * len(batch))
    out: list[bytes] = []
    o = 0
    for ctx, plaintext in batch:
        client_id: str = ctx.client_id  # type: ignore[assignment]
        data_key = rnd[o : o + 32]
        nonce = rnd[o + 32 : o + 44]
        wrap_nonce = rnd[o + 44 : o + 56]
        o += 56
        kek_encrypt, kek_aad, version = keyrings[client_id]._wrap_parts
        aad = "\x00".join(
            (VALUE_AAD_TAG, ctx.firm_id, client_id, ctx.kind, ctx.object_id, ctx.field)
        ).encode()
        out.append(
            join(
                (
                    _VALUE_HEAD_64,
                    version,
                    wrap_nonce,
                    kek_encrypt(wrap_nonce, data_key, kek_aad),
                    sha256(COMMIT_LABEL + data_key).digest(),
                    nonce,
                    AESGCM(data_key).encrypt(nonce, plaintext, aad),
                )
            )
        )
    return out


def required_work_open(
    keyrings: Mapping[str, ClientKeyring], batch: Sequence[tuple[SealContext, bytes]]
) -> list[bytes]:
    """The plainest code doing exactly the work opening a format-1 value
    requires: check the header, unwrap the data key with the version the
    reference names, check the key commitment, build the associated data,
    decrypt the body."""
    sha256 = hashlib.sha256
    compare = hmac.compare_digest
    unpack = _U32.unpack_from
    out: list[bytes] = []
    for ctx, env in batch:
        client_id: str = ctx.client_id  # type: ignore[assignment]
        if env[:4] != _VALUE_HEAD_64:
            raise ValueError("not a format-1 envelope with a 64-byte key reference")
        kek_decrypt, kek_aad = keyrings[client_id]._decrypts[unpack(env, 4)[0]]
        data_key = kek_decrypt(env[8:20], env[20:68], kek_aad)
        if not compare(sha256(COMMIT_LABEL + data_key).digest(), env[68:100]):
            raise ValueError("key commitment mismatch")
        aad = "\x00".join(
            (VALUE_AAD_TAG, ctx.firm_id, client_id, ctx.kind, ctx.object_id, ctx.field)
        ).encode()
        out.append(AESGCM(data_key).decrypt(env[100:112], env[112:], aad))
    return out


async def floor_figures(
    sealer: Sealer,
    requests: Sequence[SealRequest],
    opens: Sequence[OpenRequest],
    raw_encrypt: Callable[[], Any],
    raw_decrypt: Callable[[], Any],
) -> dict[str, float]:
    """``seal_2kb_floor`` / ``open_2kb_floor``: the required-work floor against
    the same raw baseline. Returns their ratios as emitted (keys ``"seal"``,
    ``"open"``), which set the ``seal_2kb`` / ``open_2kb`` targets."""
    firm_id = requests[0].context.firm_id
    keyrings: Mapping[str, ClientKeyring] = sealer.provider._rings[firm_id]  # type: ignore[attr-defined]
    seal_batch = [(r.context, bytes(r.plaintext)) for r in requests]
    open_batch = [(r.context, r.envelope) for r in opens]
    floor_envelopes = required_work_seal(keyrings, seal_batch)
    # the floor makes real envelopes: the library opens them, and vice versa
    reopened = await sealer.open_many(
        [OpenRequest(c, e) for (c, _), e in zip(seal_batch, floor_envelopes, strict=True)]
    )
    assert reopened == [p for _, p in seal_batch]
    assert required_work_open(keyrings, open_batch) == reopened

    async def floor_seal() -> list[bytes]:
        return required_work_seal(keyrings, seal_batch)

    async def floor_open() -> list[bytes]:
        return required_work_open(keyrings, open_batch)

    per = N_SMALL * SMALL / 1e6
    ratios: dict[str, float] = {}
    for key, floor, raw, op in (
        ("seal", floor_seal, raw_encrypt, "AESGCM.encrypt"),
        ("open", floor_open, raw_decrypt, "AESGCM.decrypt"),
    ):
        ours, base = await interleaved(floor, raw)
        ratios[key] = round(base / ours, 3)  # as emitted
        emit(
            f"{key}_2kb_floor",
            per / ours,
            "MB/s",
            per / base,
            base / ours,
            None,
            us_per_value=round(ours / N_SMALL * 1e6, 3),
            baseline_op=op,
        )
    return ratios


async def stream_variant(chunk_size: int) -> None:
    """seal/open of 1 MB as a stream with another chunk size (informational)."""
    sealer = Sealer(MemoryKeyProvider(), chunk_size=chunk_size)
    value = os.urandom(BIG)
    raw = AESGCM(AESGCM.generate_key(256))
    ctx = SealContext("firm-1", "client-1", "attachment", "blob-1", "content")
    nonce = os.urandom(12)
    ct = raw.encrypt(nonce, value, None)

    async def seal_stream() -> tuple[bytes, list[bytes]]:
        sealed = await sealer.seal_stream(ctx, value)
        return sealed.key, [frame async for frame in sealed.chunks]

    key, frames = await seal_stream()

    async def open_stream() -> list[bytes]:
        return [piece async for piece in sealer.open_stream(ctx, key, frames)]

    gb = BIG / 1e9
    kib = chunk_size // 1024
    ours, base = await interleaved(seal_stream, lambda: raw.encrypt(os.urandom(12), value, None))
    emit(
        f"seal_1mb_chunk{kib}k",
        gb / ours,
        "GB/s",
        gb / base,
        base / ours,
        None,
        chunk_size=chunk_size,
    )
    ours, base = await interleaved(open_stream, lambda: raw.decrypt(nonce, ct, None))
    emit(
        f"open_1mb_chunk{kib}k",
        gb / ours,
        "GB/s",
        gb / base,
        base / ours,
        None,
        chunk_size=chunk_size,
        baseline_op="AESGCM.decrypt",
    )


async def big_figures(sealer: Sealer) -> None:
    value = os.urandom(BIG)
    raw = AESGCM(AESGCM.generate_key(256))
    ctx = SealContext("firm-1", "client-1", "attachment", "blob-1", "content")
    nonce = os.urandom(12)
    ct = raw.encrypt(nonce, value, None)

    async def seal_stream() -> tuple[bytes, list[bytes]]:
        sealed = await sealer.seal_stream(ctx, value)
        return sealed.key, [frame async for frame in sealed.chunks]

    key, frames = await seal_stream()

    async def open_stream() -> list[bytes]:
        return [piece async for piece in sealer.open_stream(ctx, key, frames)]

    assert b"".join(await open_stream()) == value
    gb = BIG / 1e9
    ours, base = await interleaved(seal_stream, lambda: raw.encrypt(os.urandom(12), value, None))
    emit(
        "seal_1mb",
        gb / ours,
        "GB/s",
        gb / base,
        base / ours,
        0.85,
        api="seal_stream",
        chunk_size=sealer.chunk_size,
    )
    ours, base = await interleaved(open_stream, lambda: raw.decrypt(nonce, ct, None))
    emit(
        "open_1mb",
        gb / ours,
        "GB/s",
        gb / base,
        base / ours,
        0.85,
        api="open_stream",
        baseline_op="AESGCM.decrypt",
    )

    env = await sealer.seal(ctx, value)
    assert await sealer.open(ctx, env) == value
    ours, base = await interleaved(
        lambda: sealer.seal(ctx, value), lambda: raw.encrypt(os.urandom(12), value, None)
    )
    emit("seal_1mb_value", gb / ours, "GB/s", gb / base, base / ours, None, api="seal")
    ours, base = await interleaved(
        lambda: sealer.open(ctx, env), lambda: raw.decrypt(nonce, ct, None)
    )
    emit(
        "open_1mb_value",
        gb / ours,
        "GB/s",
        gb / base,
        base / ours,
        None,
        api="open",
        baseline_op="AESGCM.decrypt",
    )


_CHILD = r"""
import asyncio, resource, sys, time
sys.path.insert(0, sys.argv[1])
from clientcomm.crypto import MemoryKeyProvider, SealContext, Sealer, stream_frame_size
TOTAL = 200 * 1024 * 1024
PIECE = 1 << 16

async def main():
    sealer = Sealer(MemoryKeyProvider())
    ctx = SealContext("firm-1", "client-1", "document", "doc-1", "content")
    piece = bytes(range(256)) * (PIECE // 256)
    sealed_size = 0

    def source():
        for _ in range(TOTAL // PIECE):
            yield piece

    def rss_kb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        pass
    base = rss_kb("VmRSS:")
    t0 = time.perf_counter()
    sealed = await sealer.seal_stream(ctx, source())
    async for frame in sealed.chunks:
        sealed_size += len(frame)
    t_seal = time.perf_counter() - t0

    # opening: seal again and pipe the frames straight into the opener
    key2 = sealer.new_stream_key()
    (ref,) = await sealer.wrap_stream_keys("firm-1", [("client-1", key2)])
    t0 = time.perf_counter()
    opened = 0
    async for plain in sealer.open_stream(ctx, ref, sealer.seal_chunks(ctx, key2, source())):
        opened += len(plain)
    t_both = time.perf_counter() - t0
    peak = rss_kb("VmHWM:")
    assert opened == TOTAL, opened
    print(base, peak, sealed_size, t_seal, t_both)

asyncio.run(main())
"""


def memory_figure() -> None:
    src = str(Path(__file__).resolve().parent.parent / "src")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, src], check=True, capture_output=True, text=True
    ).stdout.split()
    base_kb, peak_kb = int(out[0]), int(out[1])
    t_seal, t_both = float(out[3]), float(out[4])
    growth_mb = (peak_kb - base_kb) / 1024
    emit(
        "stream_200mb_peak_mem",
        growth_mb,
        "MB",
        None,
        None,
        64,
        peak_rss_mb=round(peak_kb / 1024, 1),
        seal_s=round(t_seal, 3),
        seal_and_open_s=round(t_both, 3),
        lower_is_better=True,
    )


async def figures() -> None:
    sealer = Sealer(MemoryKeyProvider())
    await small_figures(sealer, "")
    await big_figures(sealer)
    for chunk_size in (64 * 1024, 256 * 1024, 1024 * 1024):
        await stream_variant(chunk_size)
    async with MemoryStore() as store:
        await small_figures(Sealer(LocalKeyProvider(store, MasterKey.generate())), "_local")


def main(argv: Sequence[str] = ()) -> None:
    asyncio.run(figures())
    memory_figure()


if __name__ == "__main__":
    main(sys.argv[1:])
