"""Bearer tokens with scopes. Secrets are shown once and stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from opsmetrics.errors import AuthenticationError, PermissionDeniedError
from opsmetrics.storage.token_records import Scope, TokenRecord


@dataclass(frozen=True, slots=True)
class NewToken:
    record: TokenRecord
    secret: str  # shown to the user once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(name: str, scope: Scope, now_ms: int) -> NewToken:
    token_id = secrets.token_hex(4)
    secret = f"om_{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(TokenRecord(token_id, name, scope, hash_secret(secret), now_ms), secret)


class TokenVerifier:
    """Checks a presented bearer token against the stored hashes."""

    def __init__(self, tokens: list[TokenRecord]) -> None:
        self._by_hash = {t.hash: t for t in tokens}

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def add(self, token: TokenRecord) -> None:
        self._by_hash[token.hash] = token

    def replace(self, tokens: list[TokenRecord]) -> None:
        """Take the stored tokens as they are now (nodes sharing a state store)."""
        self._by_hash = {t.hash: t for t in tokens}

    def check(self, authorization: str | None, needed: Scope) -> TokenRecord | None:
        """None when auth is off (no tokens exist); else the token, or an error."""
        if not self._by_hash:
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError(
                "missing bearer token: send `Authorization: Bearer <token>` "
                "(create one with `opsmetrics token create --scope ...`)"
            )
        presented = hash_secret(authorization[7:].strip())
        token = next(
            (t for h, t in self._by_hash.items() if hmac.compare_digest(h, presented)), None
        )
        if token is None:
            raise AuthenticationError("unknown or revoked token")
        if not token.scope.allows(needed):
            raise PermissionDeniedError(
                f"token {token.id!r} has scope {token.scope.value!r}; this endpoint needs "
                f"{needed.value!r} (or admin)"
            )
        return token
