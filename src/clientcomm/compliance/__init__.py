"""Compliance beyond the audit trail: retention policies, erasure
(crypto-shredding plus deleting a client's records and blobs, found through
the record registry) and the client data export (GDPR Art. 15/20).

See ``docs/compliance.md``.
"""

from __future__ import annotations

from clientcomm.compliance import operations as _operations  # noqa: F401  (declares them)
from clientcomm.compliance.erasure import erasure_kinds, run_erasure_jobs
from clientcomm.compliance.records import (
    ERASURE_KIND,
    POLICY_KIND,
    RETENTION_KIND,
    TOMBSTONE_KIND,
    ErasureJob,
    ErasureStatus,
    Tombstone,
)
from clientcomm.compliance.rules import RetentionPolicy, erasure_due, retain_until
from clientcomm.compliance.service import ComplianceService, DueClient

__all__ = [
    "ERASURE_KIND",
    "POLICY_KIND",
    "RETENTION_KIND",
    "TOMBSTONE_KIND",
    "ComplianceService",
    "DueClient",
    "ErasureJob",
    "ErasureStatus",
    "RetentionPolicy",
    "Tombstone",
    "erasure_due",
    "erasure_kinds",
    "retain_until",
    "run_erasure_jobs",
]
