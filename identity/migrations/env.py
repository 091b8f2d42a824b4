import logging
from logging.config import fileConfig

from flask import current_app

import click
from alembic import context
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
fileConfig(config.config_file_name, disable_existing_loggers=False)  # keep the app's loggers
logger = logging.getLogger('alembic.env')

#: PostgreSQL advisory lock held by a migration run until it ends (any number; this one is "idty")
MIGRATION_LOCK_KEY = 0x69647479


def get_engine():
    return current_app.extensions['migrate'].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    from identity.models import partial_indexes

    partial_indexes.declare()  # autogenerate compares them too (not declared at the models' import)
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()
    try:
        connection = connectable.connect()
    except OperationalError as err:  # `flask db upgrade` on a wrong host, port or folder: one line, as every command
        reason = (str(err.orig or err).strip().splitlines() or ["unknown"])[0]  # names host and port, no password
        raise click.ClickException(f"database unreachable: {reason}; check FLASK_SQLALCHEMY_DATABASE_URI") from None

    sqlite, postgresql = connection.dialect.name == "sqlite", connection.dialect.name == "postgresql"
    if postgresql:
        # Each migration commits on its own, so the locks it takes end with it: an index build's
        # SHARE lock or an ADD COLUMN's ACCESS EXCLUSIVE one, held to the end of a run of many,
        # stopped the servers still running from writing refresh tokens, or reading codes, for
        # the whole upgrade (2.3 s at 2,000,000 refresh tokens from b9d4f6a8c2e1). A run that fails
        # stops at the last migration that committed; `db upgrade` again goes on from there.
        conf_args = {"transaction_per_migration": True, **conf_args}
    lock_holder = None
    with connection:
        if postgresql:
            # one migration run at a time (instances deployed together each run `db upgrade` or a
            # command that upgrades): the next one waits here, then finds the schema current. The
            # lock is a transaction's, on a second connection whose transaction stays open until
            # the run ends: that pins its server connection behind a transaction pooler
            # (PgBouncer), where a session lock stayed on a server connection handed to the next
            # client, and the next run given it was granted the lock again. Neither a role's
            # statement_timeout nor its idle_in_transaction_session_timeout ends the wait or the hold.
            lock_holder = connectable.connect()
            lock_holder.execute(text("SET LOCAL statement_timeout = 0"))
            lock_holder.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
            lock_holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        if sqlite:
            # A batch migration on SQLite copies a table, drops it and renames the copy. With foreign
            # keys on (as every connection has them: services/schema.py), dropping `users` deletes,
            # by ON DELETE CASCADE, every session, refresh token, consent, authenticator app and
            # passkey of every user. Off for the migration (a PRAGMA that does nothing inside a
            # transaction, so before it), on again before the connection goes back to the pool.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
            # One SQLite transaction for the whole run, DDL included. sqlite3 (legacy transaction
            # control) begins one only before INSERT, UPDATE or DELETE, and Alembic takes SQLite's
            # DDL as not transactional: a batch migration's CREATE TABLE _alembic_tmp_x committed on
            # its own, and a run that failed after it (a full disk) left that table behind, which
            # refused every `db upgrade` from then on ("table _alembic_tmp_x already exists").
            # SQLAlchemy's recipe for pysqlite: the driver in autocommit, BEGIN emitted at begin.
            driver = connection.connection.driver_connection
            legacy_isolation = driver.isolation_level
            driver.isolation_level = None
            event.listen(connection, "begin", _sqlite_begin)
            conf_args = {"transactional_ddl": True, **conf_args}
        try:
            context.configure(
                connection=connection,
                target_metadata=get_metadata(),
                **conf_args
            )

            with context.begin_transaction():
                context.run_migrations()
        finally:
            if sqlite:
                connection.rollback()
                event.remove(connection, "begin", _sqlite_begin)
                driver.isolation_level = legacy_isolation  # before the PRAGMA, which a transaction would void
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
            if postgresql:
                connection.rollback()
            if lock_holder is not None:
                lock_holder.rollback()  # ends the transaction, and with it the lock
                lock_holder.close()


def _sqlite_begin(connection):
    # IMMEDIATE: the write lock from the start (waiting the busy timeout for it), as the serving
    # workers' writes take it; a deferred transaction that read first and then wrote failed at
    # once (SQLITE_BUSY_SNAPSHOT) whenever a worker had committed meanwhile
    connection.exec_driver_sql("BEGIN IMMEDIATE")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
