"""Signed, expiring link tokens (seed 003, step 10: the download link).

A serial-letter run's PDF/A download is fetched through a link in an e-mail.
The link carries a token the host's web app hands back to clientcomm
(:meth:`LinkTokens.verify`) before it serves anything. A token is

    ``cc1.<claims>.<mac>``

with ``<claims>`` the base64url JSON of :class:`LinkClaims` (purpose, firm,
run, the fingerprint of the run's postal filter, the download, the expiry) and
``<mac>`` the base64url HMAC-SHA256 of ``cc1.<claims>`` under a key bound to
the **purpose** and the **firm**:

    purpose key = HMAC-SHA256(firm notice key, "clientcomm/link-token/v1\\0" + purpose)

The firm notice key (:class:`~clientcomm.notifications.keys.NoticeKeys`) is
sealed, per firm, and already re-wrapped on key rotation; the purpose key is
derived from it and never stored, so a token made for one purpose cannot be
checked under (or replayed as) another, and the notice MACs and link tokens
never share a key.

A token is refused, with a :class:`LinkTokenError` naming the reason, when it
is malformed, made for another purpose, changed anywhere (any claim, the MAC,
another firm's key), or expired. Nothing is stored per token; a download is
withdrawn by removing the download it names.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import attrs

from clientcomm.clock import Clock
from clientcomm.errors import InvalidInputError, PermissionDeniedError
from clientcomm.notifications.keys import NoticeKeys

__all__ = [
    "MAX_TOKEN_TTL",
    "LinkClaims",
    "LinkPurpose",
    "LinkTokenError",
    "LinkTokens",
    "TokenProblem",
    "purpose_key",
    "sign_token",
    "token_firm",
    "verify_token",
]

_PREFIX = "cc1"
_KEY_LABEL = b"clientcomm/link-token/v1\x00"
_MAX_TOKEN_CHARS = 4096
MAX_TOKEN_TTL = timedelta(days=30)


class LinkPurpose(enum.StrEnum):
    """What a token may be used for (one purpose per token)."""

    RUN_DOWNLOAD = "letters.run-download"


class TokenProblem(enum.StrEnum):
    """Why a token was refused."""

    MALFORMED = "malformed"
    WRONG_PURPOSE = "wrong_purpose"
    TAMPERED = "tampered"
    EXPIRED = "expired"


class LinkTokenError(PermissionDeniedError):
    """A link token was refused; ``problem`` says why. Nothing was read."""

    def __init__(self, problem: TokenProblem, message: str) -> None:
        super().__init__(message, action="link-token")
        self.problem = problem


@attrs.frozen
class LinkClaims:
    """What a token says (and the MAC vouches for)."""

    purpose: LinkPurpose
    firm_id: str
    run_id: str
    filter_digest: str
    download_id: str
    expires_at: datetime


def purpose_key(firm_secret: bytes, purpose: LinkPurpose) -> bytes:
    """The key for ``purpose`` derived from a firm's notice key (pure)."""
    return hmac.new(firm_secret, _KEY_LABEL + purpose.value.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64_CHARS for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def sign_token(firm_secret: bytes, claims: LinkClaims) -> str:
    """The token for ``claims`` (pure)."""
    body = {
        "p": claims.purpose.value,
        "f": claims.firm_id,
        "r": claims.run_id,
        "q": claims.filter_digest,
        "d": claims.download_id,
        "e": int(claims.expires_at.timestamp()),
    }
    head = f"{_PREFIX}.{_b64(json.dumps(body, separators=(',', ':')).encode())}"
    mac = hmac.new(purpose_key(firm_secret, claims.purpose), head.encode(), hashlib.sha256)
    return f"{head}.{_b64(mac.digest())}"


def _malformed() -> LinkTokenError:
    return LinkTokenError(TokenProblem.MALFORMED, "the link is not valid")


def _parse(token: object) -> tuple[str, dict[str, object], bytes]:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        raise _malformed()
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _PREFIX:
        raise _malformed()
    try:
        body = json.loads(_unb64(parts[1]))
        mac = _unb64(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _malformed() from None
    if not isinstance(body, dict) or set(body) != {"p", "f", "r", "q", "d", "e"}:
        raise _malformed()
    if not all(isinstance(body[k], str) for k in "pfrqd") or type(body["e"]) is not int:
        raise _malformed()
    return f"{parts[0]}.{parts[1]}", body, mac


def token_firm(token: object) -> str:
    """The firm a token claims to be of (unverified: only to find its key).

    Raises:
        LinkTokenError: malformed.
    """
    _head, body, _mac = _parse(token)
    return str(body["f"])


def verify_token(
    firm_secret: bytes | None, token: object, *, purpose: LinkPurpose, now: datetime
) -> LinkClaims:
    """The claims of ``token`` if it is genuine, for ``purpose`` and not expired
    at ``now`` (pure). ``firm_secret`` is the notice key of the firm the token
    names; ``None`` (the firm has none) refuses every token.

    Raises:
        LinkTokenError: malformed, another purpose, changed (or another
            firm's key), expired, in this order of checking.
    """
    head, body, mac = _parse(token)
    if body["p"] != purpose.value:
        raise LinkTokenError(TokenProblem.WRONG_PURPOSE, "the link is not for this use")
    expected = (
        b""
        if firm_secret is None
        else hmac.new(purpose_key(firm_secret, purpose), head.encode(), hashlib.sha256).digest()
    )
    if not expected or not hmac.compare_digest(mac, expected):
        raise LinkTokenError(TokenProblem.TAMPERED, "the link is not valid")
    expires_at = datetime.fromtimestamp(int(str(body["e"])), UTC)
    if now >= expires_at:
        raise LinkTokenError(TokenProblem.EXPIRED, "the link has expired")
    return LinkClaims(
        purpose,
        str(body["f"]),
        str(body["r"]),
        str(body["q"]),
        str(body["d"]),
        expires_at,
    )


class LinkTokens:
    """Issue and verify link tokens with the firms' notice keys (see module docs).
    Call outside an open transaction (the key may be created)."""

    def __init__(self, keys: NoticeKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def issue(
        self,
        firm_id: str,
        purpose: LinkPurpose,
        *,
        run_id: str,
        filter_digest: str,
        download_id: str,
        ttl: timedelta,
    ) -> tuple[str, LinkClaims]:
        """A token valid for ``ttl`` from now, and its claims.

        Raises:
            InvalidInputError: ``ttl`` not positive or over :data:`MAX_TOKEN_TTL`
                (``field="ttl"``).
        """
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise InvalidInputError("ttl", f"must be positive and at most {MAX_TOKEN_TTL}")
        secret = (await self._keys.get(firm_id)).secret
        assert secret is not None  # get() creates the key
        expires = datetime.fromtimestamp(int((self._clock.now() + ttl).timestamp()), UTC)
        claims = LinkClaims(purpose, firm_id, run_id, filter_digest, download_id, expires)
        return sign_token(secret, claims), claims

    async def verify(self, token: object, purpose: LinkPurpose) -> LinkClaims:
        """The claims of a genuine, unexpired ``token`` for ``purpose``.

        Raises:
            LinkTokenError: refused (see :func:`verify_token`).
        """
        firm_id = token_firm(token)
        secret = (await self._keys.get(firm_id, create=False)).secret
        return verify_token(secret, token, purpose=purpose, now=self._clock.now())
