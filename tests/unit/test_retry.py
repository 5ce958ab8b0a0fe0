"""Which database errors a worker retries (the database is away) and which it does not
(the data is at fault: retrying cannot help, and must not hold a job forever)."""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from pgqueue._retry import permanent


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(kind: type[DBAPIError], sqlstate: str | None) -> DBAPIError:
    return kind("UPDATE ...", {}, _DriverError(sqlstate))


def test_data_errors_are_permanent_outages_are_not() -> None:
    assert permanent(_wrapped(DataError, "22021"))  # invalid byte sequence (NUL)
    assert permanent(_wrapped(DataError, "22P05"))  # untranslatable character
    assert permanent(_wrapped(DataError, "22001"))  # string data right truncation
    assert permanent(_wrapped(IntegrityError, "23505"))
    assert not permanent(_wrapped(OperationalError, "57P01"))  # admin shutdown
    assert not permanent(_wrapped(OperationalError, "08006"))  # connection failure
    assert not permanent(_wrapped(OperationalError, None))
    assert not permanent(ConnectionResetError())


def test_client_side_encoding_errors_are_permanent() -> None:
    """A lone surrogate fails in the driver before anything is sent: no SQLSTATE."""
    try:
        "\udcff".encode()
    except UnicodeEncodeError as exc:
        encode_error = exc
    assert permanent(encode_error)
    assert permanent(DataError("UPDATE ...", {}, encode_error))
    wrapped = OperationalError("UPDATE ...", {}, RuntimeError("encode"))
    wrapped.__cause__ = encode_error
    assert permanent(wrapped)
