"""Ids: new random ids and the one worker-id helper every background step uses."""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["new_id", "worker_id"]


def new_id() -> str:
    """A new random id: 32 hex digits (uuid4), opaque."""
    return uuid.uuid4().hex


def worker_id(prefix: str = "") -> str:
    """A lease owner unique to this process and call: ``[prefix:]host:pid:random``."""
    base = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{prefix}:{base}" if prefix else base
