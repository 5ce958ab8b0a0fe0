# DO NOT EDIT: generated from consumer_async.py by tools/async_to_sync.py
"""SyncConsumer: lease and settle jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from . import _errortext, _validate
from ._compat import Listener, sleep, wait_event
from ._drive import Bind, check_bind, run
from ._identity import STOPPED, SUSPENDED, SyncIdentity
from ._plans import consumer as consumer_plans
from ._retry import TRANSIENT, backoff_delay, first_line
from .errors import InvalidArgument
from .types import Message

log = logging.getLogger("pgqueue.consumer")


class SyncConsumer(SyncIdentity):
    """Leases jobs from one queue and settles them: at-least-once delivery.

    >>> consumer = SyncConsumer(engine, "emails", visibility_timeout=30)  # doctest: +SKIP
    >>> for m in consumer.dequeue(batch_size=10):                   # doctest: +SKIP
    ...     send(m.payload)
    ...     consumer.ack(m)

    A leased message carries a ``lease`` (fencing token). ``ack``, ``nack``,
    ``archive``, ``delete``, ``release`` and ``extend_visibility`` take effect only
    while the job still holds that lease, and return False otherwise: a consumer whose
    lease expired and whose job went to another consumer can never overwrite the new
    owner's outcome. They return False too for a job an admin cancelled while it ran
    (``admin.cancel_jobs``): whatever the settle asked for, that job ends ``cancelled``.

    ``listen=True`` (default) waits for work on LISTEN/NOTIFY; ``listen=False`` polls
    every ``poll_interval`` seconds (for PgBouncer in transaction mode).

    ``ack`` results are JSON: ``json_default`` encodes what ``json`` cannot (see
    :class:`SyncProducer`).
    """

    _kind = "consumer"

    def __init__(
        self,
        engine: Engine | str | URL,
        queue: str,
        *,
        schema: str = "public",
        visibility_timeout: float | timedelta | None = None,
        listen: bool = True,
        poll_interval: float | timedelta = 1.0,
        max_result_bytes: int = _validate.MAX_RESULT_BYTES,
        json_default: Callable[[Any], Any] | None = None,
        hostname: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(engine, [queue], schema=schema, hostname=hostname, port=port)
        self._queue = queue
        self._max_result_bytes = _validate.positive_int(max_result_bytes, "max_result_bytes")
        self._encode = _validate.encoder(json_default)
        self._visibility_timeout = _validate.seconds(
            visibility_timeout, "visibility_timeout", allow_zero=False
        )
        self._poll_interval = _validate.positive_seconds(poll_interval, "poll_interval")
        self._listen = bool(listen)
        self._listener: Listener | None = None

    @property
    def queue(self) -> str:
        """The queue this consumer leases from."""
        return self._queue

    def dequeue(
        self,
        batch_size: int = 1,
        *,
        visibility_timeout: float | timedelta | None = None,
        bind: Bind | None = None,
    ) -> list[Message]:
        """Lease up to ``batch_size`` available jobs, highest priority first, then FIFO.

        Each is ``running`` until ``visibility_timeout`` seconds from now (default: this
        consumer's, else the queue's); a lease that expires makes the job available
        again, with no reaper. Returns ``[]`` when nothing is available or the queue is
        paused.

        >>> batch = consumer.dequeue(batch_size=10, visibility_timeout=60)  # doctest: +SKIP
        """
        self._check_running()
        size = _validate.batch_size(batch_size)
        vt = _validate.seconds(visibility_timeout, "visibility_timeout", allow_zero=False)
        if bind is not None:
            check_bind(bind)
        plan = consumer_plans.dequeue(
            self._ctx, self._locked_by, size, vt or self._visibility_timeout
        )
        return run(self._engine, bind, plan, self._ctx)

    def ack(self, message: Message, *, result: Any = None, bind: Bind | None = None) -> bool:
        """Complete a job (deleted, or archived if its queue keeps an archive).

        False if the lease was lost, or the job was cancelled meanwhile (it ends
        ``cancelled``, not completed). With ``bind=`` the completion commits or rolls back
        with the caller's own writes. ``result``: the job's result (JSON, at most
        ``max_result_bytes``, else InvalidResult before anything is written), kept for
        the queue's ``result_ttl``; ``producer.wait`` returns it.

        >>> with Session(engine) as s, s.begin():  # doctest: +SKIP
        ...     s.add(Receipt(job=m.id))
        ...     consumer.ack(m, result={"receipt": 17}, bind=s)
        """
        (done,) = self.ack_batch([message], results=[result], bind=bind)
        return done

    def ack_batch(
        self,
        messages: Sequence[Message],
        *,
        results: Sequence[Any] | None = None,
        bind: Bind | None = None,
    ) -> list[bool]:
        """Complete many jobs in one statement; one bool per message, in order.
        ``results``: one result per message (None: none), as for :meth:`ack`."""
        return self._finish(messages, consumer_plans.ACK, bind, results)

    def archive(self, message: Message, *, result: Any = None, bind: Bind | None = None) -> bool:
        """Complete a job and keep it in the archive (outcome ``archived``) whatever the
        queue's setting, with its ``result`` (as for :meth:`ack`). False if the lease was
        lost."""
        (done,) = self._finish([message], consumer_plans.ARCHIVE, bind, [result])
        return done

    def delete(self, message: Message, *, bind: Bind | None = None) -> bool:
        """Remove a job without archiving it. False if the lease was lost."""
        (done,) = self._finish([message], consumer_plans.DELETE, bind)
        return done

    def _finish(
        self,
        messages: Sequence[Message],
        mode: int,
        bind: Bind | None,
        results: Sequence[Any] | None = None,
    ) -> list[bool]:
        checked = _validate.leased(self._queue, messages)
        texts = None
        if results is not None:
            if isinstance(results, str | bytes) or len(results) != len(checked):
                raise InvalidArgument("results must be a sequence of one result per message")
            texts = [
                _validate.result_text(r, self._max_result_bytes, self._encode) for r in results
            ]
        if bind is not None:
            check_bind(bind)
        plan = consumer_plans.finish(self._ctx, checked, mode, texts)
        outcomes = run(self._engine, bind, plan, self._ctx)
        return [o == consumer_plans.COMPLETED for o in outcomes]

    def nack(
        self,
        message: Message,
        *,
        error: BaseException | str | None = None,
        delay: float | timedelta | None = None,
        bind: Bind | None = None,
    ) -> bool:
        """Fail this attempt: retry after ``delay`` (default: exponential backoff with
        jitter from the queue's ``retry_backoff``), or dead-letter the job if it has had
        ``max_attempts`` attempts. ``error`` is recorded. False if the lease was lost.

        >>> try:                                            # doctest: +SKIP
        ...     handle(m)
        ... except Exception as exc:
        ...     consumer.nack(m, error=exc)
        """
        (done,) = self.nack_batch([message], error=error, delay=delay, bind=bind)
        return done

    def nack_batch(
        self,
        messages: Sequence[Message],
        *,
        error: BaseException | str | None = None,
        delay: float | timedelta | None = None,
        bind: Bind | None = None,
    ) -> list[bool]:
        """:meth:`nack` many jobs in one statement; one bool per message, in order."""
        checked = _validate.leased(self._queue, messages)
        secs = _validate.seconds(delay, "delay")
        if bind is not None:
            check_bind(bind)
        failure = consumer_plans.Failure(
            _errortext.error_text(error),
            _errortext.traceback_text(error),
            secs,
        )
        plan = consumer_plans.nack(self._ctx, checked, [failure] * len(checked))
        outcomes = run(self._engine, bind, plan, self._ctx)
        return [s is not None and s != consumer_plans.CANCELLED for s in outcomes]

    def release(self, message: Message, *, bind: Bind | None = None) -> bool:
        """Give a leased job back untouched: available at once, and the attempt does
        not count. False if the lease was lost."""
        (done,) = self.release_batch([message], bind=bind)
        return done

    def release_batch(self, messages: Sequence[Message], *, bind: Bind | None = None) -> list[bool]:
        """:meth:`release` many jobs in one statement; one bool per message, in order."""
        checked = _validate.leased(self._queue, messages)
        if bind is not None:
            check_bind(bind)
        plan = consumer_plans.release(self._ctx, checked)
        outcomes = run(self._engine, bind, plan, self._ctx)
        return [o == consumer_plans.RELEASED for o in outcomes]

    def extend_visibility(
        self, message: Message, seconds: float | timedelta, *, bind: Bind | None = None
    ) -> bool:
        """Keep the lease until ``seconds`` from now (database clock). False if lost.

        >>> consumer.extend_visibility(m, 60)  # doctest: +SKIP
        True
        """
        checked = _validate.leased(self._queue, [message])
        secs = _validate.positive_seconds(seconds, "seconds")
        if bind is not None:
            check_bind(bind)
        plan = consumer_plans.extend(self._ctx, checked, secs)
        (done,) = run(self._engine, bind, plan, self._ctx)
        return done

    def wait(self, timeout: float | timedelta | None = None) -> bool:
        """Block until this queue has an available job; False if ``timeout`` passed first.

        Wakes on NOTIFY (sent on enqueue, retry, release and queue resume), and by
        itself when the earliest scheduled job or expiring lease comes due, without
        polling. With ``listen=False`` it polls every ``poll_interval``.

        >>> while consumer.wait(timeout=30):       # doctest: +SKIP
        ...     for m in consumer.dequeue(10): ...
        """
        limit = _validate.seconds(timeout, "timeout")
        deadline = None if limit is None else time.monotonic() + limit
        listener = self._ensure_listener()
        attempt = 0
        while True:
            if listener is not None:
                listener.event.clear()
            try:
                plan = consumer_plans.next_available(self._ctx)
                due_in = run(self._engine, None, plan, self._ctx)
                attempt = 0
            except TRANSIENT as exc:  # the database went away: wait for it, don't die
                delay = self._retry_delay("wait", exc, attempt)
                attempt += 1
                if deadline is not None:
                    delay = min(delay, deadline - time.monotonic())
                    if delay <= 0:
                        return False
                sleep(delay)
                continue
            if due_in == 0:
                return True
            pause = None if deadline is None else deadline - time.monotonic()
            if pause is not None and pause <= 0:
                return False
            for bound in (due_in, None if listener is not None else self._poll_interval):
                if bound is not None:
                    pause = bound if pause is None else min(pause, bound)
            if listener is None:
                sleep(pause if pause is not None else self._poll_interval)
            else:
                wait_event(listener.event, pause)

    def _ensure_listener(self) -> Listener | None:
        if not self._listen:
            return None
        if self._listener is None:
            try:
                self._listener = Listener(self._engine, [self._ctx.channel])
            except NotImplementedError as exc:
                log.warning("%s; polling every %ss instead", exc, self._poll_interval)
                self._listen = False
                return None
        self._listener.start()
        return self._listener

    def messages(
        self,
        *,
        batch_size: int = 10,
        visibility_timeout: float | timedelta | None = None,
        idle_timeout: float | timedelta | None = None,
    ) -> Iterator[Message]:
        """Leased messages as work arrives; settle each before taking the next batch.

        Ends after ``idle_timeout`` seconds with no work (default: never) or once the
        consumer is shut down; while suspended it pauses. Messages of a batch not yet
        handed out when the loop stops are released at once.

        >>> for m in consumer.messages(batch_size=10):  # doctest: +SKIP
        ...     consumer.ack(m)
        """
        size = _validate.batch_size(batch_size)
        idle = _validate.seconds(idle_timeout, "idle_timeout")
        attempt = 0
        while self._state != STOPPED:
            if self._state == SUSPENDED:
                sleep(self._poll_interval)
                continue
            try:
                batch = self.dequeue(size, visibility_timeout=visibility_timeout)
                attempt = 0
            except TRANSIENT as exc:  # the database went away: wait for it, don't die
                sleep(self._retry_delay("dequeue", exc, attempt))
                attempt += 1
                continue
            if not batch:
                if not self.wait(idle):
                    return
                continue
            handed = 0
            try:
                for m in batch:
                    handed += 1
                    yield m
            finally:
                rest = batch[handed:]
                if rest:
                    try:
                        self.release_batch(rest)
                    except TRANSIENT:  # unreachable: they come back after their lease
                        log.warning("could not release %d leased jobs", len(rest))

    def _retry_delay(self, what: str, exc: BaseException, attempt: int) -> float:
        """Log a lost database and how long to back off before attempt ``attempt + 1``."""
        delay = backoff_delay(attempt)
        log.warning(
            "consumer %s: %s failed (%s); retry in %.2fs",
            self._worker_id,
            what,
            first_line(exc),
            delay,
        )
        return delay

    def shutdown(self) -> None:
        """Stop listening, mark this consumer stopped, and release an engine it created."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        super().shutdown()
