"""A writer process for the concurrent-chain test: appends audit records to a
PostgreSQL store and runs the ``audit.chain`` step between them, until done.

Usage: python tests/audit_writer_proc.py PG_URL NAME COUNT
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from clientcomm.audit import AuditTrail, append
from clientcomm.records import Records
from clientcomm.storage.postgres import PostgresStore


async def main(url: str, name: str, count: int) -> None:
    async with PostgresStore(url) as store:
        records = Records(store)
        trail = AuditTrail(store)
        print("ready", flush=True)
        for i in range(count):
            # several appends per transaction now and then, so commits interleave
            async with records.transaction("f1") as tx:
                for j in range(1 + i % 3):
                    await append(
                        tx,
                        subject=f"message:{name}-{i}-{j}",
                        operation="message.sent",
                        actor=name,
                        at=datetime.now(UTC),
                        client=f"c{i % 5}",
                    )
            if i % 4 == 0:
                await trail.step(limit=50)
        await trail.step(limit=1000)
        print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
