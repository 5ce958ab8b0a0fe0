"""Who may do what on the dashboard: credentials, CSRF tokens, and the headers that
keep a page from running anything it was not shipped with.

Reads are open unless credentials are configured (then every request needs them);
actions need ``actions=True`` *and* an authenticated operator *and* a CSRF token bound
to the browser's cookie. The app binds 127.0.0.1 unless told otherwise (``pgqueue web``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from ..errors import InvalidArgument

#: A host application's own check: the operator's name, or None (not allowed).
Authenticate = Callable[[Request], Awaitable[str | None]]

CSRF_COOKIE = "pgqueue_csrf"
CSRF_FIELD = "csrf"

#: Nothing but the dashboard's own script and style: a payload that smuggles in markup
#: still cannot run (the templates escape it first; this is the second wall).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Credentials:
    """What an operator must present. ``token``: ``Authorization: Bearer <token>``;
    ``username``/``password``: HTTP Basic; ``authenticate``: the host app's own check.
    None of them: nobody is authenticated (the dashboard is read-only)."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    authenticate: Authenticate | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials:
        """``PGQUEUE_WEB_TOKEN``, ``PGQUEUE_WEB_USERNAME`` and ``PGQUEUE_WEB_PASSWORD``."""
        env = os.environ if environ is None else environ
        return cls(
            token=env.get("PGQUEUE_WEB_TOKEN") or None,
            username=env.get("PGQUEUE_WEB_USERNAME") or None,
            password=env.get("PGQUEUE_WEB_PASSWORD") or None,
        )

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise InvalidArgument("give both a username and a password for HTTP Basic, or neither")
        if self.token is not None and len(self.token) < 16:
            raise InvalidArgument("the dashboard's token must be at least 16 characters")

    @property
    def configured(self) -> bool:
        return bool(self.token or self.username or self.authenticate)

    @property
    def basic(self) -> bool:
        return self.username is not None

    async def operator(self, request: Request) -> str | None:
        """The authenticated operator's name, or None."""
        if self.authenticate is not None:
            name = await self.authenticate(request)
            if name:
                return name
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        token = self.token
        if (
            scheme == "bearer"
            and token
            and hmac.compare_digest(value.strip().encode(), token.encode())
        ):
            return "token"
        if scheme == "basic" and self.username is not None and self.password is not None:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            ok_user = hmac.compare_digest(user.encode(), self.username.encode())
            ok_password = hmac.compare_digest(password.encode(), self.password.encode())
            if ok_user and ok_password:
                return user
        return None


class Csrf:
    """Tokens bound to a per-browser random cookie by an HMAC with the app's secret: a
    page from elsewhere can neither read the cookie (SameSite=Strict, HttpOnly) nor
    compute a token for it."""

    def __init__(self, secret: str | bytes | None) -> None:
        if secret is None:
            secret = os.environ.get("PGQUEUE_WEB_SECRET") or secrets.token_bytes(32)
        self._secret = secret.encode() if isinstance(secret, str) else secret

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(32)

    def token(self, cookie: str) -> str:
        return hmac.new(self._secret, cookie.encode(), hashlib.sha256).hexdigest()

    def valid(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.token(cookie), token)


def same_origin(request: Request) -> bool:
    """A state-changing request from a page of this host (an ``Origin`` header, when the
    browser sends one, names this host)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
