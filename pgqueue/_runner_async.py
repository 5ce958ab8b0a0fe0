"""Running one job in a worker's slot (async source).

The handler runs (``async def`` on the loop, a plain function on a thread of the
worker's pool); whatever it does, its settle goes to the completer at once and the
slot is free. A failure is logged with its traceback and stored with it; an
entrypoint's ``retry`` policy sets the delay. ``raise Snooze(s)`` puts the job back for
``s`` seconds without using its attempt. What the handler returns is the job's result
(JSON text at most ``max_result_bytes``, else the attempt fails with InvalidResult).
Cancelled at the shutdown timeout (only an ``async def`` handler can be), the job is
released: its attempt does not count.
Cancelled by an admin (``admin.cancel_jobs``: its task is interrupted, or a thread's
handler returns early), the job ends ``cancelled``: every settle of such a job does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from . import _errortext, _validate
from ._acompat import Cancelled, DaemonPool, Event, call_handler
from ._completer_async import AsyncCompleter
from ._inflight import InFlight, Job
from ._observe import Observer, fields
from ._plans.consumer import Failure
from ._registry import Entrypoint
from .errors import Snooze, UnknownEntrypoint
from .types import Message

log = logging.getLogger("pgqueue.worker")


class AsyncRunner:
    """Runs jobs' handlers for one run of a worker."""

    def __init__(
        self,
        entrypoints: Mapping[str, Entrypoint],
        inflight: InFlight,
        completer: AsyncCompleter,
        threads: DaemonPool,
        freed: Event,
        observer: Observer,
        max_result_bytes: int = _validate.MAX_RESULT_BYTES,
        encode: _validate.Encode = _validate.dumps,
    ) -> None:
        self._observer = observer
        self._entrypoints = entrypoints
        self._inflight = inflight
        self._completer = completer
        self._threads = threads
        self._freed = freed
        self._max_result_bytes = max_result_bytes
        self._encode = encode

    async def execute(self, job: Job) -> None:
        m = job.message
        ep = self._entrypoints.get(m.entrypoint)
        if not self._inflight.start(job):
            # Never to start here (its lease may be gone, or it was given back): if still
            # held (an extend failed), it goes back to the queue.
            unspent = self._inflight.unspent([job])
            if unspent:
                await self._completer.release(unspent)
            self._freed.set()
            return
        seen = self._observer.handling(m)

        def timed_out() -> None:
            job.stop = True
            log.warning("job %s (%s): past its timeout, still running", m.id, m.entrypoint)

        try:
            if job.cancel_requested:  # cancelled before its handler could start
                raise Cancelled
            if ep is None:
                raise UnknownEntrypoint(f"no handler for entrypoint {m.entrypoint!r} here")
            # A payload the handler's Message[T] does not accept fails the attempt here.
            arg = m if ep.parse is None else replace(m, payload=ep.parse(m.payload))
            returned = await call_handler(
                ep.handler,
                arg,
                ep.timeout,
                self._threads,
                lambda: self._inflight.in_thread(job),
                timed_out,
                ep.coroutine,
            )
            # The result as it will be stored; one that cannot be fails the attempt.
            result = _validate.result_text(returned, self._max_result_bytes, self._encode)
        except Cancelled as exc:
            self._inflight.finish(job)
            seen.end(exc)
            # Released: a job an admin cancelled ends cancelled (the release skips it and
            # the completer ends it), one cancelled at shutdown runs again elsewhere.
            await self._completer.release([m])
            if not job.cancel_requested:
                raise  # the worker is stopping: its task must end cancelled
            log.info("job %s (%s): cancelled by an admin", m.id, m.entrypoint)
        except Snooze as snooze:
            self._inflight.finish(job)
            seen.end(snooze)
            await self._snooze(m, snooze)
        except Exception as exc:
            self._inflight.finish(job)
            await self._fail(m, ep, exc)  # logged inside the span: the record has its ids
            seen.end(exc)
        else:
            self._inflight.finish(job)
            seen.end(None)
            await self._completer.ack(m, result)
        finally:
            self._freed.set()  # a slot is free

    async def _snooze(self, m: Message, snooze: Snooze) -> None:
        try:
            delay = _validate.seconds(snooze.seconds, "Snooze seconds") or 0.0
        except Exception as exc:  # a bad Snooze fails the attempt (stored, retried)
            await self._fail(m, self._entrypoints.get(m.entrypoint), exc)
            return
        log.debug("job %s (%s): snoozed for %gs", m.id, m.entrypoint, delay)
        await self._completer.snooze(m, delay)

    async def _fail(self, m: Message, ep: Entrypoint | None, exc: Exception) -> None:
        max_attempts = ep.max_attempts if ep is not None else None
        try:
            text = _errortext.error_text(exc)
            log.warning(
                "job %s (%s) attempt %s failed: %s",
                m.id,
                m.entrypoint,
                m.attempts,
                text,
                exc_info=exc,
                extra=fields(m, "failed"),
            )
            delay = None
            if ep is not None and ep.retry_delay is not None:
                try:
                    delay = _validate.seconds(ep.retry_delay(m, exc), "retry delay")
                except Exception as retry_exc:  # a broken retry policy must not lose the job
                    log.error("retry policy of %s failed: %s", m.entrypoint, retry_exc)
            failure = Failure(text, _errortext.traceback_text(exc), delay, max_attempts)
        except Exception as describe_exc:  # whatever the error is, the job is settled
            log.error("job %s: its error could not be described (%r)", m.id, describe_exc)
            failure = Failure(
                f"{type(exc).__name__} (its text could not be read)", None, None, max_attempts
            )
        await self._completer.nack(m, failure)
