"""Chaos runner: pgqueue under real faults, with a per-job ledger.

Not a pytest module (no ``test_`` names): run it as ``python -m tests.system.chaos
--profile short``. It starts a private PostgreSQL it can stop and restart, a steady
producer and two ``pgqueue run tests.system.chaos.app:worker`` processes, injects one
fault per scenario (database restart, terminated connections, SIGKILL, SIGTERM, xmin
horizon held, overload, ...) and checks from the ledger (tests/support/ledger.py) that
no acknowledged job was lost and none was completed twice. See docs/reliability.md.
"""
