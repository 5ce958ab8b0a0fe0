"""Per-minute counters of settled jobs (``pgqueue_stats``), written by completers."""

from __future__ import annotations

from sqlalchemy import BigInteger, Text, bindparam, column, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY, insert

from ..schema import stats

#: What a completer counts, in the order of the columns and of its arrays.
COUNTERS = ("completed", "failed", "dead", "cancelled")
#: How long the counters are kept (the dashboard shows the last hour or day).
KEEP = "7 days"

_u = (
    func.unnest(
        bindparam("b_queues", type_=ARRAY(Text)),
        bindparam("b_entrypoints", type_=ARRAY(Text)),
        *(bindparam(f"b_{name}", type_=ARRAY(BigInteger)) for name in COUNTERS),
    )
    .table_valued(
        column("queue", Text),
        column("entrypoint", Text),
        *(column(name, BigInteger) for name in COUNTERS),
    )
    .render_derived(name="u")
)
_add = insert(stats).from_select(
    ["minute", "queue", "entrypoint", *COUNTERS],
    select(
        func.date_trunc("minute", func.now()),
        _u.c.queue,
        _u.c.entrypoint,
        *(_u.c[name] for name in COUNTERS),
    ),
)
# One row per (queue, entrypoint) in a call (the completer sums before it writes), so an
# upsert never meets the same key twice.
ADD_STATS = _add.on_conflict_do_update(
    index_elements=[stats.c.minute, stats.c.queue, stats.c.entrypoint],
    set_={name: stats.c[name] + _add.excluded[name] for name in COUNTERS},
)

#: Counters past ``KEEP``, dropped by the completer at most once an hour.
PRUNE_STATS = delete(stats).where(
    stats.c.minute < func.now() - literal_column(f"INTERVAL '{KEEP}'")
)
