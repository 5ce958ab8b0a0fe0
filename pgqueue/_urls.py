"""Database URLs: a plain ``postgresql://`` URL gets the default driver of each face."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from .errors import InvalidArgument

#: Default drivers when a URL names none: psycopg 3 for sync, asyncpg for async.
SYNC_DRIVER = "postgresql+psycopg"
ASYNC_DRIVER = "postgresql+asyncpg"
_ASYNC_DRIVERS = {"postgresql+asyncpg", "postgresql+psycopg_async", "postgresql+psycopg"}


def _masked(url: str) -> tuple[str, str | None]:
    """``url`` with the password of its user info (between ``://`` and the last ``@``)
    shown as ``***``, and that password (None if it has none)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon and password):
        return url, None
    return f"{scheme}{sep}{user}:***@{host}", password


def _parse(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        # Never the password: the command line prints this message.
        shown, password = _masked(url) if isinstance(url, str) else ("?", None)
        reason = str(exc)
        if password:
            reason = reason.replace(password, "***")
        raise InvalidArgument(f"not a database URL: {shown!r} ({reason})") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise InvalidArgument(f"pgqueue needs PostgreSQL, got a {parsed.drivername!r} URL")
    return parsed


def sync_url(url: str | URL) -> URL:
    """``url`` with a sync driver: ``postgresql://`` becomes ``postgresql+psycopg://``."""
    parsed = _parse(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername=SYNC_DRIVER)
    if parsed.drivername == "postgresql+psycopg_async":
        return parsed.set(drivername=SYNC_DRIVER)
    return parsed


def async_url(url: str | URL) -> URL:
    """``url`` with an async driver: ``postgresql://`` becomes ``postgresql+asyncpg://``."""
    parsed = _parse(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername=ASYNC_DRIVER)
    if parsed.drivername not in _ASYNC_DRIVERS:
        raise InvalidArgument(
            f"{parsed.drivername!r} is not an async driver: use postgresql+asyncpg:// "
            "or postgresql+psycopg://"
        )
    return parsed
