"""Alembic environment of this repository's ``alembic.ini``.

``alembic upgrade head`` from a checkout runs pgqueue's packaged revisions
(``pgqueue/migrations/versions``) exactly as ``admin.install()`` does: same version
table (``<schema>.pgqueue_alembic_version``), same advisory lock, same
``schema_translate_map``. The database comes from ``-x dsn=...`` / ``PGQUEUE_DSN`` /
``DATABASE_URL``, the schema from ``-x schema=...`` / ``PGQUEUE_SCHEMA`` (default
``public``).
"""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy import create_engine, pool

from alembic import context
from pgqueue._migrate import configure_and_run, url_and_schema

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    raise SystemExit(
        "pgqueue's migrations need a live connection (they take an advisory lock and "
        "qualify names with the target schema): offline --sql mode is not supported"
    )

url, schema = url_and_schema(config, context.get_x_argument(as_dictionary=True))
engine = create_engine(url, poolclass=pool.NullPool)
try:
    with engine.connect() as connection:
        # Our own short-lived connection: put the target schema first in its search_path,
        # so that autogenerate (`alembic check`, `alembic revision --autogenerate`), which
        # reflects the tables visible without a schema name, compares that schema.
        quoted = connection.dialect.identifier_preparer.quote_schema(schema)
        connection.exec_driver_sql(f"SET search_path TO {quoted}, public")
        configure_and_run(context, connection, schema)
        connection.commit()
finally:
    engine.dispose()
