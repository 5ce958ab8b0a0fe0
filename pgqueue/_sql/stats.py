"""Per-minute counters of settled jobs (``pgqueue_stats``), written by completers."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Text,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from ..schema import stats
from ._common import unnest_arrays

#: What a completer counts, in the order of the columns and of its arrays.
COUNTERS = ("completed", "failed", "dead", "cancelled")
#: How long the counters are kept (the dashboard shows the last hour or day).
KEEP = "7 days"

_u = (
    unnest_arrays(
        bindparam("b_queues", type_=ARRAY(Text)),
        bindparam("b_entrypoints", type_=ARRAY(Text)),
        *(bindparam(f"b_{name}", type_=ARRAY(BigInteger)) for name in COUNTERS),
        # One histogram per row, each as the text of an array: unnest flattens a 2-D one.
        bindparam("b_durations", type_=ARRAY(Text)),
    )
    .table_valued(
        column("queue", Text),
        column("entrypoint", Text),
        *(column(name, BigInteger) for name in COUNTERS),
        column("durations", Text),
    )
    .render_derived(name="u")
)
_add = insert(stats).from_select(
    ["minute", "queue", "entrypoint", *COUNTERS, "durations"],
    select(
        func.pg_catalog.date_trunc("minute", func.pg_catalog.now()),
        _u.c.queue,
        _u.c.entrypoint,
        *(_u.c[name] for name in COUNTERS),
        cast(_u.c.durations, ARRAY(BigInteger)),
    ),
)
# Two histograms added bucket by bucket (either may be NULL). It names the target table
# unqualified, as ON CONFLICT allows: the statement's clone for any schema keeps it right.
_ADD_DURATIONS = literal_column(
    "(SELECT pg_catalog.array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)"
    " FROM ROWS FROM (pg_catalog.unnest(pgqueue_stats.durations),"
    " pg_catalog.unnest(excluded.durations)) WITH ORDINALITY AS d(a, b, i))",
    ARRAY(BigInteger),
)
# One row per (queue, entrypoint) in a call (the completer sums before it writes), so an
# upsert never meets the same key twice.
ADD_STATS = _add.on_conflict_do_update(
    index_elements=[stats.c.minute, stats.c.queue, stats.c.entrypoint],
    set_={
        **{name: stats.c[name] + _add.excluded[name] for name in COUNTERS},
        "durations": _ADD_DURATIONS,
    },
)

#: Counters past ``KEEP``, dropped by the completer at most once an hour.
PRUNE_STATS = delete(stats).where(
    stats.c.minute < func.pg_catalog.now() - literal_column(f"INTERVAL '{KEEP}'")
)
