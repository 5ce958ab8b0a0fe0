"""How many jobs a worker leases per fetch, and how many it may hold before their
handlers start (its prefetch buffer), adapted to how fast its handlers take them.

A worker starts with no buffer: it leases only for free slots, ``batch_size`` at most
(what it always did). When a fetch came back full and the worker had waited on it
(slots free and nothing buffered when it returned, and handlers ended since the
previous fetch, so not a first fetch), the buffer doubles, up to :data:`MOST_PER_SLOT`
jobs a slot, if the handlers' pace (jobs ended a second since the previous fetch) would
take the doubled buffer in :data:`DRAIN_WITHIN` seconds (so slow handlers never buffer);
a fetch that comes back short halves it. Once the oldest buffered job has
waited more than :data:`STALE` seconds for a slot (handlers slower than the buffer
assumed), the buffer halves and what it held goes back to the queue, unspent, for
workers with free slots. Buffered jobs are held like running ones (leased, heartbeated,
fenced, and released unstarted at shutdown). A worker with limited entrypoints never
buffers (``adaptive=False``). Without the pace condition, slow handlers satisfied the
growth rule once slots freed one at a time: a worker leased a few jobs into its buffer
and gave them back a second later, every cycle (issue 22).
"""

from __future__ import annotations

import math

from ._plans.worker import fetch_size
from ._validate import MAX_BATCH

#: Buffered jobs a worker may hold per slot (concurrency) at most.
MOST_PER_SLOT = 16
#: Largest fetch an adapted buffer asks for (one statement's worth).
MOST_PER_FETCH = 1_000
#: Seconds a buffered job may wait for a slot before the buffer is too large.
STALE = 1.0
#: The buffer grows only to what the handlers' pace takes within this many seconds.
DRAIN_WITHIN = STALE / 4


class Prefetch:
    """One run's fetch sizing: pure bookkeeping, the fetch loop does the rest."""

    __slots__ = ("_adaptive", "_batch", "_concurrency", "_most", "extra")

    def __init__(self, concurrency: int, batch_size: int, *, adaptive: bool = True) -> None:
        self._concurrency = concurrency
        self._batch = batch_size
        #: False: never buffer (a worker with limited entrypoints: a buffered job would
        #: hold a global concurrency slot, or have spent a rate token, without running).
        self._adaptive = adaptive
        most = min(MOST_PER_FETCH, MOST_PER_SLOT * concurrency)
        self._most = min(MAX_BATCH, max(batch_size, most))
        #: Jobs it may hold beyond its slots (not counting ones settling).
        self.extra = 0

    @property
    def size(self) -> int:
        """Jobs one fetch asks for at most."""
        return max(self._batch, self.extra)

    def want(self, running: int, buffered: int, held: int) -> int:
        """Jobs to lease now (0: wait for a slot, or for the buffer to run low).
        ``running``: handlers in their slots; ``buffered``: held, waiting for a slot;
        ``held``: every job held, settling ones included (up to a fetch's worth of
        those: a buffer's jobs done together settle together, and when the cap was a
        batch, 8 by default, the next fetch waited for their settle's round trip:
        fetch, run, settle, fetch, one at a time, issue 22)."""
        cap = self._concurrency + self.extra
        size = self.size
        room = min(cap - running - buffered, cap + size - held, size)
        # With jobs in hand, wait for room for half a fetch rather than leasing one job
        # per round trip.
        if room <= 0 or (held and room < (size + 1) // 2):
            return 0
        return fetch_size(room)

    def fetched(self, asked: int, got: int, waited: bool, pace: float = math.inf) -> None:
        """Adapt to a fetch of ``asked`` that leased ``got``; ``waited``: when it
        returned, slots were free with nothing buffered to run; ``pace``: jobs a second
        the handlers ended since the previous fetch."""
        if got < asked:
            self.extra //= 2
        elif waited and self._adaptive:
            grown = min(self._most, max(self._batch, 2 * self.extra))
            if grown <= pace * DRAIN_WITHIN:
                self.extra = grown

    def stale(self, oldest: float) -> bool:
        """The oldest buffered job has waited ``oldest`` seconds for a slot: past
        :data:`STALE` the buffer is larger than the handlers' pace needs (they slowed
        down): it halves, and True says to give the buffered jobs back to the queue
        (another worker may have a free slot now)."""
        if oldest <= STALE:
            return False
        self.extra //= 2
        return True
