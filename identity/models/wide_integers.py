"""Integer columns that outgrow 32 bits: BIGINT on PostgreSQL, whose INTEGER stops at 2**31 - 1.
SQLite's INTEGER is 64 bits already, so there they stay INTEGER (and the schema as it was).

- GROWING_ID, the id of a table every request may add to (codes, refresh tokens, sessions, audit
  events, ...): the purge removes the rows, but an id is never given again, so a busy server's
  sequence passes 2**31 - 1 (a year at 68 refreshes a second) and the next insert failed
  ('integer out of range', a 503 for every refresh). On SQLite the INTEGER PRIMARY KEY that is the
  64-bit rowid (a BIGINT one would not be).
- EPOCH_SECONDS, every timestamp (epoch seconds, identity/clock.py): 2**31 - 1 is 2038-01-19, and a
  lifetime ending after it (a 10-year refresh token issued from 2028) failed its write the same way.
"""

from sqlalchemy import BigInteger, Integer

GROWING_ID = BigInteger().with_variant(Integer(), "sqlite")
EPOCH_SECONDS = BigInteger().with_variant(Integer(), "sqlite")
