"""Bearer tokens with scopes, and publishable keys for web pages. Secrets are shown once and
stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from opsmetrics.errors import AuthenticationError, BadDataError, PermissionDeniedError
from opsmetrics.storage.token_records import Scope, TokenRecord

#: A publishable key's default rate: requests per minute per client address.
DEFAULT_KEY_RATE_PER_MIN = 120
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class NewToken:
    record: TokenRecord
    secret: str  # shown to the user once, never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(name: str, scope: Scope, now_ms: int) -> NewToken:
    if scope is Scope.EVENTS:
        raise BadDataError(
            "a publishable key (scope events) needs the origins it is used from: "
            "`opsmetrics token create --scope events --origin https://your.site`"
        )
    token_id = secrets.token_hex(4)
    secret = f"om_{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(TokenRecord(token_id, name, scope, hash_secret(secret), now_ms), secret)


def new_publishable_key(
    name: str, origins: list[str], now_ms: int, rate_per_min: int = DEFAULT_KEY_RATE_PER_MIN
) -> NewToken:
    """A key for page source: it may only send events, from `origins`, at `rate_per_min`."""
    if not origins:
        raise BadDataError(
            "a publishable key needs at least one --origin (e.g. https://shop.example.com): "
            "browsers send it with every request and other origins are refused"
        )
    if not 1 <= rate_per_min <= 1_000_000:
        raise BadDataError(f"--rate {rate_per_min}: give 1 to 1000000 requests per minute")
    allowed = tuple(dict.fromkeys(normalise_origin(o) for o in origins))
    token_id = secrets.token_hex(4)
    secret = f"om_pk_{token_id}_{secrets.token_urlsafe(24)}"
    record = TokenRecord(
        token_id, name, Scope.EVENTS, hash_secret(secret), now_ms, allowed, rate_per_min
    )
    return NewToken(record, secret)


def normalise_origin(text: str) -> str:
    """`scheme://host[:port]` as a browser sends it in `Origin`: lower case, no default port."""
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    bad = (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or bool(parts.query or parts.fragment or parts.username)
        or port == -1
    )
    if bad:
        raise BadDataError(
            f"--origin {text!r}: an origin is scheme://host[:port] with scheme http or https "
            "and no path, e.g. https://shop.example.com or http://localhost:3000"
        )
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    shown = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown}"


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

    def _find(self, secret: str) -> TokenRecord | None:
        # Every stored hash is compared, in constant time, so the time taken says nothing
        # about the secret nor about which token (if any) it matched.
        presented = hash_secret(secret.strip())
        found = None
        for stored, token in self._by_hash.items():
            if hmac.compare_digest(stored, presented):
                found = token
        return found

    def check(self, authorization: str | None, needed: Scope) -> TokenRecord | None:
        """None when auth is off (no tokens exist); else the token, or an error."""
        if not self._by_hash:
            return None
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError(
                "missing bearer token: send `Authorization: Bearer <token>` "
                "(create one with `opsmetrics token create --scope ...`)"
            )
        token = self._find(authorization[7:])
        if token is None:
            raise AuthenticationError("unknown or revoked token")
        if not token.scope.allows(needed):
            raise PermissionDeniedError(
                f"token {token.id!r} has scope {token.scope.value!r}; this endpoint needs "
                f"{needed.value!r} (or admin)"
            )
        return token

    def publishable(self, secret: str | None) -> TokenRecord:
        """The publishable key `secret` is, else an error. Any other kind of token is refused
        here even when it would allow more: it must never travel in a web page."""
        if not secret:
            raise AuthenticationError(
                "missing publishable key: send ?key=<key> (create one with "
                "`opsmetrics token create --scope events --origin https://your.site`)"
            )
        token = self._find(secret)
        if token is None:
            raise AuthenticationError("unknown or revoked publishable key")
        if token.scope is not Scope.EVENTS:
            raise PermissionDeniedError(
                f"token {token.id!r} has scope {token.scope.value!r}: only publishable keys "
                "(scope events) are taken here; revoke it if it was put in a web page"
            )
        return token

    def origin_allowed(self, origin: str | None, key: TokenRecord | None) -> bool:
        """Whether `origin` may use `key` (or, for a preflight without one, any key)."""
        if not origin:
            return False
        keys = [key] if key is not None else list(self._by_hash.values())
        return any(origin in k.origins for k in keys if k.scope is Scope.EVENTS)


def check_origin(origin: str | None, key: TokenRecord) -> None:
    if origin is None:
        raise PermissionDeniedError(
            f"publishable key {key.id!r} is taken only from web pages on its origins; "
            "this request has no Origin header"
        )
    if origin not in key.origins:
        raise PermissionDeniedError(
            f"origin {origin!r} may not use publishable key {key.id!r} (its origins: "
            f"{', '.join(key.origins)}); create a key with `--origin {origin}`"
        )


class KeyRateLimiter:
    """A token bucket per publishable key and client address, in memory (per node).

    A bucket holds a tenth of a minute's requests (at least one) and refills at the key's
    rate, so a page may send a short burst (load, a few clicks, a beacon on leaving) and a
    flood is cut to the rate.
    """

    MAX_BUCKETS = 100_000

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[float, int]] = {}  # tokens, at ms

    def take(self, key: TokenRecord, address: str, now_ms: int) -> float:
        """0 when the request may go ahead; else the seconds until it may (Retry-After)."""
        rate = (key.rate_per_min or DEFAULT_KEY_RATE_PER_MIN) / 60_000  # per ms
        capacity = burst(key)
        tokens, at = self._buckets.get((key.id, address), (capacity, now_ms))
        tokens = min(capacity, tokens + max(0, now_ms - at) * rate)
        if tokens >= 1:
            self._remember((key.id, address), tokens - 1, now_ms)
            return 0.0
        self._remember((key.id, address), tokens, now_ms)
        return (1 - tokens) / rate / 1000

    def _remember(self, bucket: tuple[str, str], tokens: float, now_ms: int) -> None:
        self._buckets.pop(bucket, None)  # re-inserted last: the dict is in order of use
        self._buckets[bucket] = (tokens, now_ms)
        if len(self._buckets) > self.MAX_BUCKETS:
            # The least recently used half: their buckets have refilled the most.
            for old in list(self._buckets)[: self.MAX_BUCKETS // 2]:
                del self._buckets[old]


def burst(key: TokenRecord) -> float:
    return float(max(1, math.ceil((key.rate_per_min or DEFAULT_KEY_RATE_PER_MIN) / 10)))


class TokenFailureLimiter:
    """Wrong tokens per client address, in memory (per node): a bucket of `per_min` attempts
    that refills at `per_min` a minute. While it is empty the address is refused before its
    token is checked at all, so guessing goes no faster than the rate."""

    MAX_ADDRESSES = 100_000

    def __init__(self, per_min: int) -> None:
        self._per_ms = max(1, per_min) / 60_000
        self._capacity = float(max(1, per_min))
        self._buckets: dict[str, tuple[float, int]] = {}  # attempts left, at ms

    def _left(self, address: str, now_ms: int) -> float:
        left, at = self._buckets.get(address, (self._capacity, now_ms))
        return min(self._capacity, left + max(0, now_ms - at) * self._per_ms)

    def wait_s(self, address: str, now_ms: int) -> float:
        """0 when `address` may present a token; else the seconds until it may."""
        left = self._left(address, now_ms)
        return 0.0 if left >= 1 else (1 - left) / self._per_ms / 1000

    def failed(self, address: str, now_ms: int) -> bool:
        """Count a wrong token; True when that used up the address's last attempt."""
        left = self._left(address, now_ms) - 1
        self._buckets.pop(address, None)  # re-inserted last: the dict is in order of use
        self._buckets[address] = (left, now_ms)
        if len(self._buckets) > self.MAX_ADDRESSES:
            for old in list(self._buckets)[: self.MAX_ADDRESSES // 2]:
                del self._buckets[old]
        return left < 1
