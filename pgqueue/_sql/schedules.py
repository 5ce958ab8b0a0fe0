"""Cron schedules: one claim per tick, and the database clock."""

from __future__ import annotations

from sqlalchemy import (
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from ..schema import (
    schedules,
)
from ._common import (
    TS,
)

# --------------------------------------------------------------------------- schedules
UPSERT_SCHEDULE = (
    insert(schedules)
    .values(
        name=bindparam("b_name"),
        cron=bindparam("b_cron"),
        queue=bindparam("b_queue"),
        entrypoint=bindparam("b_entrypoint"),
    )
    .on_conflict_do_update(
        index_elements=[schedules.c.name],
        set_={
            "cron": bindparam("b_cron"),
            "queue": bindparam("b_queue"),
            "entrypoint": bindparam("b_entrypoint"),
            "updated_at": func.pg_catalog.now(),
        },
    )
    .returning(schedules.c.last_tick, func.pg_catalog.now())
)

#: Exactly one caller per tick gets a row back: the one that moved last_tick forward.
CLAIM_TICK = (
    update(schedules)
    .where(
        schedules.c.name == bindparam("b_name"),
        or_(
            schedules.c.last_tick.is_(None),
            schedules.c.last_tick < bindparam("b_tick", type_=TS),
        ),
    )
    .values(last_tick=bindparam("b_tick", type_=TS), updated_at=func.pg_catalog.now())
    .returning(schedules.c.name)
)

DATABASE_NOW = select(func.pg_catalog.now())

#: Every recorded schedule, by name, with the database's now (``admin.list_schedules``).
SELECT_SCHEDULES = select(
    schedules.c.name,
    schedules.c.cron,
    schedules.c.queue,
    schedules.c.entrypoint,
    schedules.c.last_tick,
    schedules.c.updated_at,
    func.pg_catalog.now(),
).order_by(schedules.c.name)
