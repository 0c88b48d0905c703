"""Gathering the evidence of one message from every registered source."""

from __future__ import annotations

import logging
from datetime import datetime

from clientcomm.audit import AuditTrail
from clientcomm.errors import ConfigurationError, IntegrityError
from clientcomm.evidence.models import (
    EVIDENCE_SOURCES,
    DeliveryEvidence,
    EvidenceContext,
    EvidenceSourceRegistry,
    Fact,
)
from clientcomm.messages.records import MessageRecord
from clientcomm.records import Records

__all__ = ["gather"]

log = logging.getLogger("clientcomm.evidence")


async def gather(
    *,
    firm_id: str,
    message: MessageRecord,
    records: Records,
    audit: AuditTrail,
    now: datetime,
    sources: EvidenceSourceRegistry = EVIDENCE_SOURCES,
) -> DeliveryEvidence:
    """Ask every source about ``message`` (already authenticated) and order
    their facts by time.

    A source that meets a record it cannot read reports it as a problem and
    goes on; a source that raises :class:`~clientcomm.errors.IntegrityError`
    is itself a problem (its facts are missing), the others still answer.

    Raises:
        ConfigurationError: a source reported a fact of a kind it did not declare.
    """
    ctx = EvidenceContext(firm_id, message, records, audit)
    facts: list[Fact] = []
    for source in sources:
        try:
            found = list(await source.fn(ctx))
        except IntegrityError as exc:
            ctx.problem(f"source {source.name}: {exc.message}")
            continue
        for fact in found:
            if not isinstance(fact, Fact) or fact.kind not in source.kinds:
                kind = fact.kind if isinstance(fact, Fact) else type(fact).__name__
                raise ConfigurationError(
                    f"evidence source {source.name!r} reported an undeclared fact {kind!r}"
                )
            facts.append(fact)
    for line in ctx.problems:
        log.error("evidence of message %s: %s", message.id, line)
    ordered = sorted(facts, key=lambda f: (f.at is None, f.at or now))
    return DeliveryEvidence(
        firm_id=firm_id,
        message_id=message.id,
        client_id=message.client_id,
        mailing_id=message.mailing_id,
        facts=tuple(ordered),
        problems=tuple(ctx.problems),
        gathered_at=now,
    )
