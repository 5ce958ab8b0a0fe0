"""Prometheus metrics (``pip install 'pgqueue[prometheus]'``).

**Worker metrics**, recorded by every worker in the process (both faces) into
``prometheus_client``'s default registry, labelled by ``queue`` and ``entrypoint``:

=========================================== ========= =====================================
``pgqueue_jobs_started_total``              counter   handlers started (one per attempt)
``pgqueue_jobs_completed_total``            counter   jobs completed (the settle committed)
``pgqueue_jobs_failed_total``               counter   attempts whose handler raised
``pgqueue_jobs_retried_total``              counter   failed attempts scheduled to run again
``pgqueue_jobs_dead_total``                 counter   jobs dead-lettered (attempts spent)
``pgqueue_jobs_cancelled_total``            counter   jobs ended cancelled (``cancel_jobs``)
``pgqueue_jobs_snoozed_total``              counter   ``raise Snooze(s)``
``pgqueue_jobs_lost_total``                 counter   settles whose lease was lost
``pgqueue_job_duration_seconds``            histogram a handler's run time
``pgqueue_job_pickup_latency_seconds``      histogram handler start - when the job became ready
``pgqueue_job_end_to_end_seconds``          histogram completed jobs: completion - enqueue
``pgqueue_jobs_in_flight``                  gauge     handlers running now
``pgqueue_worker_concurrency``              gauge     job slots of the running workers
=========================================== ========= =====================================

``failed`` = ``retried`` + ``dead`` (+ failures whose lease was lost). Latencies mix
the database's clock (enqueue and ready times) with this host's (start, completion).
Pick-up latency counts every attempt from when the job became ready for it (read by
the lease statement: its enqueue, its ``run_at``, a retry's or a snooze's time, or the
end of a lost lease), so a delay or a backoff is not counted as waiting.

**Queue metrics**, read from the database at each scrape by :class:`QueueCollector`
(``pgqueue metrics --port 9108`` serves them on their own; see ``pgqueue.endpoints``).
"""

from ._client import available
from ._queues import QUEUE_FAMILIES as QUEUE_FAMILIES  # the families a QueueCollector reports
from ._queues import QueueCollector
from ._worker import WorkerMetrics, worker_metrics

__all__ = ["QueueCollector", "WorkerMetrics", "available", "worker_metrics"]
