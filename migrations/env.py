"""Alembic environment for costtrack's `records` table.

costtrack runs these migrations itself (``costtrack db upgrade``, or automatically;
see ``costtrack.store.database``) with a Config built in code and an open connection
passed in ``config.attributes["connection"]``. Run standalone (``alembic`` with a
config whose ``script_location`` is this directory) it connects to
``sqlalchemy.url`` from that config, or to the URL costtrack resolves
(``COSTTRACK_DATABASE_URL``, ``.env``, ``sqlite:///costtrack.db``).
"""

from __future__ import annotations

from alembic import context

from costtrack.store.database import make_engine, migration_transaction, resolve_url
from costtrack.store.schema import metadata

config = context.config
target_metadata = metadata


def _configure(**kw: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: future migrations use batch mode there.
        render_as_batch=True,
        compare_type=True,
        **kw,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or resolve_url(None)
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # The caller holds the transaction (and the migration lock).
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    try:
        with engine.connect() as conn:
            with migration_transaction(conn):
                _configure(connection=conn)
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
