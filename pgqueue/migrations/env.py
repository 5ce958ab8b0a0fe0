"""Alembic environment for pgqueue's packaged migrations.

Used by ``pgqueue install`` / ``admin.install()`` (which hand over a connection in
``config.attributes``) and by the repository's own ``alembic.ini``. A host application
does not use this file: it adds ``pgqueue:migrations/versions`` to its own
``version_locations`` instead (see the README).
"""

from __future__ import annotations

from sqlalchemy import create_engine

from alembic import context
from pgqueue._migrate import configure_and_run, url_and_schema

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    configure_and_run(context, connection, config.attributes["schema"])
else:
    url, schema = url_and_schema(config, context.get_x_argument(as_dictionary=True))
    engine = create_engine(url)
    with engine.connect() as conn:
        configure_and_run(context, conn, schema)
        conn.commit()
    engine.dispose()
