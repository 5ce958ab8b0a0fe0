"""LISTEN/NOTIFY: the only driver-specific code in pgqueue.

A listener owns one dedicated connection, taken from the engine's own pool (so the
user's connect arguments and events apply) and detached from it. It sets an event
whenever a notification arrives on its channel, and reconnects by itself with
backoff when the connection drops; after a reconnect it sets the event too, since
notifications sent while it was away are lost and the consumer must look again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

log = logging.getLogger("pgqueue.listen")

#: First and longest pause between reconnection attempts (seconds), with jitter.
RECONNECT_MIN, RECONNECT_MAX = 0.05, 5.0
#: How often an idle listener checks that its connection is still alive.
HEALTH_INTERVAL = 5.0


def backoff(attempt: int) -> float:
    base: float = min(RECONNECT_MAX, RECONNECT_MIN * 2**attempt)
    return base * (0.5 + random.random() / 2)


def listen_sql(channel: str) -> str:
    """``LISTEN "channel"`` (the channel is quoted as an identifier)."""
    return 'LISTEN "' + channel.replace('"', '""') + '"'


def deliver(on_payload: Callable[[str], None] | None, payload: str) -> None:
    """Hand a notification's payload to its callback; a failing callback is logged, and
    never ends the listener."""
    if on_payload is None:
        return
    try:
        on_payload(payload)
    except Exception:
        log.exception("LISTEN: handling a notification failed")
