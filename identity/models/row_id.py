"""The id column of a table that every request may add to (codes, refresh tokens, sessions, audit
events, ...): the purge removes the rows, but an id is never given again, so a busy server's
PostgreSQL sequence passes 2**31 - 1 (a year at 68 refreshes a second) and the next insert failed
('integer out of range', a 503 for every refresh). BIGINT on PostgreSQL; on SQLite the INTEGER
PRIMARY KEY that is the 64-bit rowid (a BIGINT one would not be)."""

from sqlalchemy import BigInteger, Integer

GROWING_ID = BigInteger().with_variant(Integer(), "sqlite")
