"""Two writer processes and the API append and chain at once on PostgreSQL:
one chain, no fork, nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clientcomm.audit import AuditTrail, append
from clientcomm.records import Records
from clientcomm.storage.postgres import PostgresStore
from clientcomm.testing.postgres import isolated_schema
from tests.conftest import pg_admin_url

ROOT = Path(__file__).resolve().parent.parent.parent
COUNT = 60


def per_writer(count: int) -> int:
    return sum(1 + i % 3 for i in range(count))


@pytest.mark.postgres
async def test_two_writer_processes_and_the_api_make_one_valid_chain() -> None:
    async with isolated_schema(pg_admin_url()) as url, PostgresStore(url) as store:  # migrates
        cmd = [sys.executable, str(ROOT / "tests" / "audit_writer_proc.py"), url]
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        procs = [
            await asyncio.create_subprocess_exec(
                *cmd, name, str(COUNT), env=env, stdout=asyncio.subprocess.PIPE
            )
            for name in ("w1", "w2")
        ]
        for p in procs:
            assert p.stdout is not None
            await p.stdout.readline()  # "ready"
        records = Records(store)
        trail = AuditTrail(store)
        for i in range(COUNT):  # the API appends and chains meanwhile
            async with records.transaction("f1") as tx:
                await append(
                    tx,
                    subject=f"message:api-{i}",
                    operation="message.sent",
                    actor="api",
                    at=datetime.now(UTC),
                )
            if i % 3 == 0:
                await trail.step(limit=20)
        for p in procs:
            out, _ = await p.communicate()
            assert p.returncode == 0 and b"done" in out
        await trail.chain("f1")
        result = await trail.verify("f1")
        total = 2 * per_writer(COUNT) + COUNT
        assert result.ok, result.fault
        assert result.checked == total and result.pending == 0
        entries = [e async for e in _all(trail)]
        assert [e.position for e in entries] == list(range(1, total + 1))
        assert len({e.subject for e in entries}) == total  # none lost, none doubled
        assert {e.actor for e in entries} == {"w1", "w2", "api"}


async def _all(trail: AuditTrail):  # type: ignore[no-untyped-def]
    cursor = None
    while True:
        page = await trail.query("f1", limit=1000, cursor=cursor)
        for e in page.entries:
            yield e
        if page.cursor is None:
            return
        cursor = page.cursor
