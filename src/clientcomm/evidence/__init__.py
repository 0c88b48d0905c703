"""Proof of delivery: one :class:`DeliveryEvidence` per message sent to a
client, gathered from the registered evidence sources
(``app.messages.evidence(actor, message_id)``; ``docs/compliance.md``).

A capability adds its facts by registering a source
(:func:`register_evidence_source`) that declares its fact kinds.
"""

from __future__ import annotations

from clientcomm.evidence import sources as _sources  # noqa: F401  (registers the built-ins)
from clientcomm.evidence.models import (
    EVIDENCE_SOURCES,
    DeliveryEvidence,
    EvidenceContext,
    EvidenceSource,
    EvidenceSourceRegistry,
    Fact,
    SourceFn,
    register_evidence_source,
)
from clientcomm.evidence.service import gather

__all__ = [
    "EVIDENCE_SOURCES",
    "DeliveryEvidence",
    "EvidenceContext",
    "EvidenceSource",
    "EvidenceSourceRegistry",
    "Fact",
    "SourceFn",
    "gather",
    "register_evidence_source",
]
