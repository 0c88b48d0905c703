"""The audit operations of retention, erasure and the client data export."""

from __future__ import annotations

from clientcomm.audit import declare

__all__: list[str] = []

declare(
    "retention.policy_set",
    "firm",
    "a firm's retention policy was set or removed",
    "`ComplianceService.set_policy`",
    ("years", "removed"),
)
declare(
    "retention.date_set",
    "client",
    "the host set (or cleared) a client's retention date",
    "`ComplianceService.set_retention_date`",
    ("keep_until",),
)
declare(
    "client.erasure_queued",
    "client",
    "a client's erasure began: its keys are destroyed, its records and blobs go next",
    "`ComplianceService.erase`, `clients.erase` step",
    ("reason", "override", "retain_until"),
)
declare(
    "client.erased",
    "client",
    "a client's records and blobs were deleted; a tombstone remains",
    "`clients.erase` step",
    ("records", "blobs", "shared_kept", "undecodable", "reason", "override"),
)
declare(
    "client.exported",
    "client",
    "everything stored for a client was exported (GDPR Art. 15/20)",
    "`ComplianceService.export`",
    ("messages",),
)
