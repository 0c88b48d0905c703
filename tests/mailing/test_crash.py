"""Exactly once under crashes: SIGKILL a worker process mid-fan-out, again and again."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from clientcomm import SQLiteStore
from clientcomm.actors import StaffActor
from clientcomm.crypto import MasterKey, generate_master_key
from clientcomm.directory.sql import SqlDirectory
from clientcomm.messages import MESSAGE_KIND
from clientcomm.rules.audience import Audience
from tests.mailing_support import make_app, recipient_states

ROOT = Path(__file__).resolve().parents[2]
LEASE = 0.5


async def test_sigkill_mid_fan_out_never_loses_or_doubles(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    key = generate_master_key()
    async with SQLiteStore(db) as store, make_app(store, tmp_path, blobs_on_disk=True) as app:
        from clientcomm.crypto import LocalKeyProvider

        app.sealer.provider = LocalKeyProvider(store, MasterKey.from_text(key))
        directory = app.directory
        assert isinstance(directory, SqlDirectory)
        from clientcomm.directory.models import Client

        for i in range(600):
            await directory.put_client(Client(f"m{i:04}", "f1", f"Mandant {i}"))
        receipt = await app.mailings.submit(StaffActor("f1", "admin"), Audience.everyone(), "Hallo")
        total = receipt.total
    rng = random.Random(20261124)
    cmd = [
        sys.executable,
        str(ROOT / "tests" / "mailing_worker_proc.py"),
        str(db),
        str(tmp_path / "blobs"),
        key,
        str(LEASE),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    kills = 0
    for _ in range(12):
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        await proc.stdout.readline()  # "ready"
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        await proc.wait()
        await asyncio.sleep(LEASE + 0.05)  # let the dead worker's leases expire
    assert kills >= 10
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"idle" in out
    async with SQLiteStore(db) as store, store.transaction("f1") as tx:
        [mailing] = await tx.list("mailing")
        messages = await tx.list(MESSAGE_KIND)
    async with SQLiteStore(db) as store:
        assert await recipient_states(store) == {"delivered": total}
    assert mailing.status == "completed"  # finished even if a killed worker did the last batch
    per_client: dict[str, int] = {}
    for m in messages:
        per_client[m.parent or ""] = per_client.get(m.parent or "", 0) + 1
    assert len(per_client) == total and set(per_client.values()) == {1}
    # no attachment blobs were involved; no orphan files either
