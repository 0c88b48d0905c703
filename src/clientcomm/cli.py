"""The ``clientcomm`` command.

clientcomm migrate URL            apply pending schema migrations
clientcomm keys new               print a fresh firm master key
clientcomm clients URL --firm ID  list the clients of the SQL-backed Directory
"""

from __future__ import annotations

import argparse
import asyncio
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for usage or clientcomm errors)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(args.url))
        if args.command == "clients":
            return asyncio.run(_clients(args.url, args.firm))
        if args.command == "keys" and args.keys_command == "new":
            return _keys_new()
    except ClientCommError as exc:
        print(f"clientcomm: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces the commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
