"""Scaling out: one mailing fanned out by 1, 2 and 4 worker PROCESSES on one PostgreSQL.

``python bench/scale.py`` (run by ``make bench``; ``--quick`` for a short run)
starts a throwaway PostgreSQL cluster (scripts/pg-cluster.sh), and for each
worker count:

1. a fresh schema with a firm of 20,000 clients in the SQL Directory, their
   client keys created (as for every mailing after a client's first), and one
   2 KB text mailing to all of them submitted (``notify=False``: the fan-out
   alone is measured);
2. N worker processes, each a full ``ClientComm`` over the same database (its
   own connection pool), run ``app.run_step("mailing.fanout")`` until every
   recipient is through; they start together on a signal;
3. recipients/s over the wall time from the signal until the last worker is
   done, the CPU seconds the workers used (each measures itself with psutil)
   and the CPU seconds of the PostgreSQL server's processes over the same span;
4. every copy is counted afterwards: exactly one per client, none lost or
   doubled (the bench fails otherwise).

Prints one JSON object per figure on stdout (like the other benches), a table
on stderr. Figures: ``scale_fanout_{1,2,4}w`` (recipients/s) and
``scale_2w_speedup`` (target >= 1.3 on a 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from clientcomm.actors import StaffActor  # noqa: E402
from clientcomm.app import ClientComm  # noqa: E402
from clientcomm.blobs.memory import MemoryBlobStore  # noqa: E402
from clientcomm.crypto import LocalKeyProvider, MasterKey  # noqa: E402
from clientcomm.directory.models import Firm, Role, Staff  # noqa: E402
from clientcomm.directory.sql import SqlDirectory  # noqa: E402
from clientcomm.mail.memory import MemoryTransport  # noqa: E402
from clientcomm.messages import MESSAGE_KIND  # noqa: E402
from clientcomm.notifications.links import LinkTemplates  # noqa: E402
from clientcomm.notifications.outbox import MailSettings  # noqa: E402
from clientcomm.rules.audience import Audience  # noqa: E402
from clientcomm.storage.postgres import PostgresStore  # noqa: E402

ADMIN = StaffActor("f1", "admin")
TEXT = ("Sehr geehrte Mandantin, sehr geehrter Mandant, " * 50)[:2048]
BATCH = 500  # recipients per step (and per page of the mailing)
POOL = 4  # connections per worker process


def emit(name: str, value: float, unit: str, **extra: Any) -> None:
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit, **extra}), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wire(store: PostgresStore, master: MasterKey) -> ClientComm:
    return ClientComm(
        store=store,
        directory=SqlDirectory(store),
        keys=LocalKeyProvider(store, master),
        blobs=MemoryBlobStore(),
        transport=MemoryTransport(),
        links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
        mail=MailSettings(sender="portal@portal.example", message_id_domain="portal.example"),
        mailing_batch=BATCH,
    )


# -- one worker process ------------------------------------------------------------------
async def worker_main(conninfo: str, key: str, mailing_id: str) -> None:
    """Wait for ``go`` on stdin, fan out until the mailing has nothing pending,
    print what it did and its CPU seconds, wait for ``exit``."""
    me = psutil.Process()
    store = await PostgresStore(conninfo, min_size=POOL, max_size=POOL).open()
    try:
        app = wire(store, MasterKey.from_text(key))
        await app.mailings.status(ADMIN, mailing_id)  # warm: connections, key check
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        cpu0 = me.cpu_times()
        done = 0
        while True:
            n = await app.run_step("mailing.fanout", limit=BATCH)
            done += n
            if n == 0:
                progress = await app.mailings.status(ADMIN, mailing_id)
                if progress.pending == 0:
                    break
                await asyncio.sleep(0.02)  # the rest is leased by other workers
        cpu1 = me.cpu_times()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        print(json.dumps({"done": done, "cpu": cpu}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
    finally:
        await store.aclose()


# -- the parent --------------------------------------------------------------------------
def server_processes(cluster: Path) -> list[psutil.Process]:
    root = Path((cluster / "pgroot").read_text().strip())
    pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
    master = psutil.Process(pid)
    return [master, *master.children(recursive=True)]


def server_cpu(cluster: Path) -> float:
    total = 0.0
    for proc in server_processes(cluster):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


async def sample_backends(url: str, stop: asyncio.Event) -> Counter[str]:
    """What the workers' server backends are doing, sampled every 10 ms:
    ``lock`` (waiting for a row or table lock another worker holds), ``io``/
    ``lwlock`` (the server's own waits), ``cpu`` (running), ``client`` (in a
    transaction, waiting for the worker's next statement), ``idle``."""
    import psycopg

    seen: Counter[str] = Counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            cur = await conn.execute(
                "SELECT state, wait_event_type FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            for state, wait in await cur.fetchall():
                if state == "idle":
                    seen["idle"] += 1
                elif state and state.startswith("idle in transaction"):
                    seen["client"] += 1
                elif wait == "Lock":
                    seen["lock"] += 1
                elif wait in ("IO", "LWLock"):
                    seen[wait.lower()] += 1
                else:
                    seen["cpu"] += 1
            await asyncio.sleep(0.01)
    return seen


async def seed(conninfo: str, n: int, master: MasterKey, *, analyze: bool) -> str:
    """The firm, its clients (bulk), their keys and the submitted mailing."""
    async with PostgresStore(conninfo) as store:
        directory = SqlDirectory(store)
        await directory.put_firm(Firm("f1", "Kanzlei Skalierung"))
        await directory.put_staff(Staff("admin", "f1", "Ada Admin", Role.ADMIN))
        ids = [f"c{i:06}" for i in range(n)]
        await store.sql_write(
            [
                (
                    "INSERT INTO dir_clients (firm_id, id, name, active) VALUES (?,?,?,?)",
                    [("f1", c, f"Mandant {c}", 1) for c in ids],
                )
            ]
        )
        app = wire(store, master)
        keys = LocalKeyProvider(store, master)
        for i in range(0, n, 1000):
            await keys.wrap_many("f1", [(c, bytes(32)) for c in ids[i : i + 1000]])
        receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT, notify=False)
        assert receipt.total == n, receipt
    if analyze:  # fresh statistics, as autovacuum keeps them on a database in use
        import psycopg

        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            await conn.execute("ANALYZE")
    return receipt.id


async def count_copies(conninfo: str, mailing_id: str) -> tuple[int, int, int]:
    """(copies, clients with one, clients with more than one) as stored."""
    async with PostgresStore(conninfo) as store:
        per_client: Counter[str] = Counter()
        async for record in store.iterate("f1", MESSAGE_KIND, batch=5000):
            per_client[record.parent or ""] += 1
        progress = await wire(store, MasterKey.generate()).mailings.status(ADMIN, mailing_id)
        assert progress.delivered == sum(per_client.values()), progress
    return (
        sum(per_client.values()),
        sum(1 for v in per_client.values() if v == 1),
        sum(1 for v in per_client.values() if v > 1),
    )


async def run(url: str, cluster: Path, n: int, workers: int, *, analyze: bool) -> dict[str, float]:
    from clientcomm.testing.postgres import isolated_schema

    master = MasterKey.generate()
    async with isolated_schema(url) as conninfo:
        mailing_id = await seed(conninfo, n, master, analyze=analyze)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                conninfo,
                master.to_text(),
                mailing_id,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
            for _ in range(workers)
        ]
        try:
            for p in procs:
                assert p.stdout is not None
                line = await asyncio.wait_for(p.stdout.readline(), 120)
                assert line.strip() == b"ready", line
            server0 = server_cpu(cluster)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_backends(url, stop))
            start = time.perf_counter()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                await p.stdin.drain()
            results = []
            for p in procs:
                assert p.stdout is not None
                results.append(json.loads(await asyncio.wait_for(p.stdout.readline(), 600)))
            elapsed = time.perf_counter() - start
            server = server_cpu(cluster) - server0
            stop.set()
            waits = await sampler
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"exit\n")
                await p.stdin.drain()
            for p in procs:
                assert await asyncio.wait_for(p.wait(), 60) == 0
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
        copies, once, doubled = await count_copies(conninfo, mailing_id)
    done = sum(r["done"] for r in results)
    if not (copies == once == done == n and doubled == 0):
        raise SystemExit(
            f"{workers} workers: {copies} copies for {n} clients ({once} once, "
            f"{doubled} more than once), workers reported {done}"
        )
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "worker_cpu": sum(r["cpu"] for r in results),
        "server_cpu": server,
        "per_worker": [r["done"] for r in results],  # type: ignore[dict-item]
        "backends": dict(waits),  # type: ignore[dict-item]
    }


async def main(
    n: int, counts: list[int], existing: Path | None = None, *, analyze: bool = True
) -> int:
    cluster = existing or Path(tempfile.mkdtemp(prefix="clientcomm-scale-pg."))
    await asyncio.to_thread(
        subprocess.run,
        ["bash", str(ROOT / "scripts" / "pg-cluster.sh"), "start", str(cluster)],
        check=True,
        capture_output=True,
    ) if existing is None else None
    try:
        url = (cluster / "url").read_text().strip()
        log(f"{n:,} recipients, {BATCH} per step, {POOL} connections per worker; {url}")
        log(
            f"{'workers':>7} {'recipients/s':>13} {'wall s':>7} {'worker CPU s':>13} "
            f"{'server CPU s':>13}  copies per worker"
        )
        rates: dict[int, float] = {}
        for w in counts:
            load = os.getloadavg()[0]
            r = await run(url, cluster, n, w, analyze=analyze)
            rates[w] = r["rate"]
            log(
                f"{w:>7} {r['rate']:>13,.0f} {r['elapsed']:>7.2f} {r['worker_cpu']:>13.2f} "
                f"{r['server_cpu']:>13.2f}  {r['per_worker']}  load {load:.1f}  "
                f"backend samples {r['backends']}"
            )
            emit(
                f"scale_fanout_{w}w",
                r["rate"],
                "recipients/s",
                recipients=n,
                wall_s=round(r["elapsed"], 3),
                worker_cpu_s=round(r["worker_cpu"], 3),
                server_cpu_s=round(r["server_cpu"], 3),
                copies_per_worker=r["per_worker"],
                backend_samples=r["backends"],
                lost=0,
                doubled=0,
                recipients_per_cpu_s=round(n / (r["worker_cpu"] + r["server_cpu"]), 1),
                loadavg_1m_before=round(load, 2),
            )
        status = 0
        if 1 in rates and 2 in rates:
            speedup = rates[2] / rates[1]
            emit("scale_2w_speedup", speedup, "x", target=1.3, cpus=psutil.cpu_count())
            log(f"2 workers / 1 worker: {speedup:.2f}x (target >= 1.3)")
            status = 0 if speedup >= 1.3 else 1
        return status
    finally:
        if existing is None:
            await asyncio.to_thread(
                subprocess.run,
                ["bash", str(ROOT / "scripts" / "pg-cluster.sh"), "stop", str(cluster)],
                check=False,
                capture_output=True,
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        asyncio.run(worker_main(*sys.argv[2:5]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 recipients instead")
    parser.add_argument("--recipients", type=int, default=None)
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default: 1,2,4)")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="skip ANALYZE after seeding (shows what stale planner statistics cost)",
    )
    parser.add_argument(
        "--cluster", type=Path, help="use this running scripts/pg-cluster.sh cluster (kept)"
    )
    args = parser.parse_args()
    n = args.recipients or (5_000 if args.quick else 20_000)
    sys.exit(
        asyncio.run(
            main(
                n,
                [int(w) for w in args.workers.split(",")],
                args.cluster,
                analyze=not args.no_analyze,
            )
        )
    )
