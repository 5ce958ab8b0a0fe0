"""The worker's fetch sizing (``pgqueue._prefetch``): no buffer until fetches prove the
handlers faster than a round trip, bounded growth, and a halving on a short fetch."""

from __future__ import annotations

from pgqueue._prefetch import DRAIN_WITHIN, MOST_PER_SLOT, STALE, Prefetch


def test_without_a_buffer_it_fetches_for_free_slots_only() -> None:
    sizing = Prefetch(concurrency=8, batch_size=8)
    assert sizing.want(running=0, buffered=0, held=0) == 8
    assert sizing.want(running=5, buffered=0, held=5) == 0  # 3 free: less than half a batch
    assert sizing.want(running=4, buffered=0, held=4) == 4
    assert sizing.want(running=8, buffered=0, held=8) == 0  # every slot busy: nothing


def test_the_buffer_grows_only_when_the_worker_waited_on_a_full_fetch() -> None:
    sizing = Prefetch(concurrency=8, batch_size=8)
    sizing.fetched(asked=8, got=8, waited=False)  # slow handlers: slots still busy
    assert sizing.extra == 0
    sizing.fetched(asked=8, got=8, waited=True)
    assert sizing.extra == 8
    assert sizing.want(running=8, buffered=0, held=8) == 8  # leases ahead of the slots
    for _ in range(20):
        sizing.fetched(asked=sizing.size, got=sizing.size, waited=True)
    assert sizing.extra == MOST_PER_SLOT * 8
    assert sizing.want(running=0, buffered=0, held=0) == MOST_PER_SLOT * 8


def test_a_short_fetch_halves_the_buffer_and_settling_jobs_count() -> None:
    sizing = Prefetch(concurrency=4, batch_size=4)
    for _ in range(3):
        sizing.fetched(asked=sizing.size, got=sizing.size, waited=True)
    assert sizing.extra == 16
    sizing.fetched(asked=16, got=3, waited=True)  # little work: lease less
    assert sizing.extra == 8
    # Held jobs still settling take room too (at most a fetch's worth beyond the slots
    # and the buffer: 4 + 8 + 8 here).
    assert sizing.want(running=0, buffered=0, held=20) == 0
    assert sizing.want(running=0, buffered=0, held=17) == 0  # 3: less than half a fetch
    assert sizing.want(running=0, buffered=0, held=16) == 4
    for _ in range(5):
        sizing.fetched(asked=4, got=0, waited=True)
    assert sizing.extra == 0


def test_a_buffer_whose_jobs_wait_too_long_shrinks_and_is_given_back() -> None:
    """Handlers that slowed down: the oldest buffered job waited past STALE; the buffer
    halves and its jobs go back to the queue."""
    sizing = Prefetch(concurrency=8, batch_size=8)
    for _ in range(3):
        sizing.fetched(asked=sizing.size, got=sizing.size, waited=True)
    assert sizing.extra == 32
    assert not sizing.stale(STALE / 2)
    assert sizing.extra == 32
    assert sizing.stale(STALE * 2)
    assert sizing.extra == 16


def test_slow_handlers_never_grow_the_buffer() -> None:
    """Slots that free one at a time satisfy the growth rule; a pace that would take the
    doubled buffer longer than DRAIN_WITHIN does not grow it (no lease-and-give-back
    churn with slow handlers, issue 22); a fast pace does."""
    sizing = Prefetch(concurrency=8, batch_size=8)
    for _ in range(5):  # 1 s handlers on 8 slots: 8 jobs a second
        sizing.fetched(asked=1, got=1, waited=True, pace=8.0)
    assert sizing.extra == 0
    sizing.fetched(asked=8, got=8, waited=True, pace=8 / DRAIN_WITHIN)
    assert sizing.extra == 8
    sizing.fetched(asked=8, got=8, waited=True, pace=8 / DRAIN_WITHIN)
    assert sizing.extra == 8  # 16 would take longer than DRAIN_WITHIN


def test_a_worker_with_limited_entrypoints_never_buffers() -> None:
    """Limits are taken at lease time (a held job counts as running against a global
    concurrency limit; a rate token is spent): such a worker leases for free slots only."""
    sizing = Prefetch(concurrency=8, batch_size=8, adaptive=False)
    for _ in range(5):
        sizing.fetched(asked=sizing.size, got=sizing.size, waited=True)
    assert sizing.extra == 0 and sizing.size == 8
    assert sizing.want(running=8, buffered=0, held=8) == 0
