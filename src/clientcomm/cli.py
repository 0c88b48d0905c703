"""The ``clientcomm`` command.

clientcomm migrate URL            apply pending schema migrations
clientcomm keys new               print a fresh firm master key
clientcomm clients URL --firm ID  list the clients of the SQL-backed Directory
clientcomm worker URL --once ...  run mailing fan-out and notification delivery
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from clientcomm.directory.sql import directory_for
from clientcomm.errors import ClientCommError
from clientcomm.storage.url import open_store


async def _migrate(url: str) -> int:
    store = await open_store(url, migrate=False)
    try:
        version = await store.migrate()
    finally:
        await store.aclose()
    print(f"schema version {version}")
    return 0


async def _clients(url: str, firm_id: str) -> int:
    store = await open_store(url)
    try:
        directory = directory_for(store)
        for client in await directory.list_clients(firm_id):
            state = "active" if client.active else "inactive"
            print(f"{client.id}\t{client.name}\t{state}\t{','.join(sorted(client.group_ids))}")
    finally:
        await store.aclose()
    return 0


async def _worker(args: argparse.Namespace) -> int:
    """Run the background worker over the embedded wiring: SQL Directory in the
    same database, LocalKeyProvider (master key from CLIENTCOMM_MASTER_KEY or
    CLIENTCOMM_MASTER_KEY_FILE), FileBlobStore and SMTP from the options."""
    from clientcomm.app import ClientComm
    from clientcomm.blobs.filesystem import FileBlobStore
    from clientcomm.crypto import LocalKeyProvider, load_master_key
    from clientcomm.mail import SMTPConfig, SMTPTransport, TLSMode
    from clientcomm.notifications import LinkTemplates, MailSettings
    from clientcomm.worker import Worker

    store = await open_store(args.url)
    transport = SMTPTransport(
        SMTPConfig(
            host=args.smtp_host,
            port=args.smtp_port,
            tls=TLSMode(args.smtp_tls),
            username=args.smtp_user,
            password=os.environ.get("CLIENTCOMM_SMTP_PASSWORD"),
        )
    )
    app = ClientComm(
        store=store,
        directory=directory_for(store),
        keys=LocalKeyProvider(store, load_master_key()),
        blobs=FileBlobStore(args.blobs),
        transport=transport,
        links=LinkTemplates(default=args.link),
        mail=MailSettings(sender=args.sender, message_id_domain=args.message_id_domain),
    )
    try:
        done = await Worker(app).run(stop_when_idle=args.once)
    finally:
        await app.aclose()
    print(f"processed {done}")
    return 0


def _keys_new() -> int:
    from clientcomm.crypto import generate_master_key

    print(generate_master_key())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clientcomm", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="apply pending schema migrations")
    p.add_argument("url", help="memory://, sqlite:///path or postgresql://...")
    keys = sub.add_parser("keys", help="key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("new", help="print a fresh master key (base64)")
    p = sub.add_parser("clients", help="list clients of the SQL-backed Directory")
    p.add_argument("url")
    p.add_argument("--firm", required=True)
    p = sub.add_parser("worker", help="run mailing fan-out and notification delivery")
    p.add_argument("url")
    p.add_argument("--once", action="store_true", help="stop when nothing is due")
    p.add_argument("--blobs", required=True, help="directory of the FileBlobStore")
    p.add_argument(
        "--link",
        required=True,
        help="portal link template, e.g. https://portal.example/{firm_id}/clients/{client_id}",
    )
    p.add_argument("--sender", required=True, help="From address of notifications")
    p.add_argument("--message-id-domain", required=True)
    p.add_argument("--smtp-host", default="localhost")
    p.add_argument("--smtp-port", type=int, default=None)
    p.add_argument("--smtp-tls", default="starttls", help="starttls, implicit or none")
    p.add_argument("--smtp-user", default=None, help="password from CLIENTCOMM_SMTP_PASSWORD")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for usage or clientcomm errors)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(args.url))
        if args.command == "clients":
            return asyncio.run(_clients(args.url, args.firm))
        if args.command == "worker":
            return asyncio.run(_worker(args))
        if args.command == "keys" and args.keys_command == "new":
            return _keys_new()
    except ClientCommError as exc:
        print(f"clientcomm: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces the commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
