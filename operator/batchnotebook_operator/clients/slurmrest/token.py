"""The JWTs slurmrestd's auth/jwt accepts: a token is a login as its user, signed with the
cluster's HS256 key, so it is only ever signed for a user the cluster's policy allows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from batchnotebook_api import accounts

#: Tokens are renewed after this fraction of their lifetime, so none is used close to its end.
RENEW_AFTER = 0.8


@dataclass(frozen=True)
class Token:
    """One signed token and when it ends and is renewed (epoch seconds)."""

    value: str
    expires_at: float
    renew_at: float


class TokenSigner:
    """HS256 JWTs as Slurm's auth/jwt reads them (`sun` = user, `iat`, `exp`), one per user,
    reused until RENEW_AFTER of their lifetime has passed. A token is a login as that user: none
    is ever signed for a name the cluster's userMapping denies (root, the scheduler's admin),
    except the query user's own, which only the client's listings use."""

    def __init__(
        self,
        key: bytes,
        lifetime_seconds: int,
        clock: Callable[[], float] = time.time,
        *,
        cluster_spec: dict | None = None,
        query_user: str = accounts.DEFAULT_QUERY_USER,
    ) -> None:
        if not key:
            raise ValueError("the JWT key is empty")
        self.key = key
        self.lifetime = lifetime_seconds
        self.clock = clock
        self.cluster_spec = cluster_spec or {}
        self.query_user = query_user
        self._tokens: dict[str, Token] = {}

    def token(self, user: str) -> str:
        if user != self.query_user:
            accounts.check(self.cluster_spec, user)  # AccountRefused: no token at all
        now = self.clock()
        cached = self._tokens.get(user)
        if cached is None or now >= cached.renew_at:
            issued = int(now)
            value = jwt.encode(
                {"sun": user, "iat": issued, "exp": issued + self.lifetime},
                self.key,
                algorithm="HS256",
            )
            cached = Token(value, issued + self.lifetime, issued + self.lifetime * RENEW_AFTER)
            self._tokens[user] = cached
        return cached.value
