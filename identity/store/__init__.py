"""Persistence: the one place that knows how a write reaches the database.

Services say *what* happens (a code is consumed, a refresh token rotated, a sign-in attempt
counted); this package decides *how*: on which connection, in which transaction, with which
statement for which dialect. What lives here:

- connection.py: the per-process autocommit connection of the hot paths (one round trip per
  statement, no pool checkout, no ORM), and SQLite's serialised write transaction.
- writes.py: short write transactions (`write`, `write_if`) of prepared statements.
- grants.py: authorization codes and refresh tokens: read a grant, consume it once, rotate.
- sessions.py: browser sessions: read the live one, start, touch and end one.
- lockout.py: the sign-in attempt counter: reserve an attempt, settle or release it.
- accounts.py: the user a sign-in reads, and the rehash it writes.
- tokens.py: the bearer check's read, and the access-token revocation list.
- keys.py: signing keys: read them all, write new ones in a transaction of their own.
- listing.py: the operator's whole-table lists, in code-point order on every database.
- leases.py: the bearer cache's leases on user rows (the wait itself stays explicit, in
  services/bearer_cache.py: `wait_out_cached_answers`, called after the commit).

Statements are built once, at import, with every value a bind parameter: these are hot paths.

The rule: only services and the store commit. Routes, Authlib glue (oauth2/) and models never
call `commit()`; the store never imports services (it knows rows, not use cases).
"""
