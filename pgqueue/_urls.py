"""Database URLs: a plain ``postgresql://`` URL gets the default driver of each face."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

from .errors import InvalidArgument

#: Default drivers when a URL names none: psycopg 3 for sync, asyncpg for async.
SYNC_DRIVER = "postgresql+psycopg"
ASYNC_DRIVER = "postgresql+asyncpg"
_ASYNC_DRIVERS = {"postgresql+asyncpg", "postgresql+psycopg_async", "postgresql+psycopg"}


def _parse(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError and friends
        raise InvalidArgument(f"not a database URL: {url!r} ({exc})") from exc
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
