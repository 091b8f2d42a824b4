"""IN lists whose length the caller does not bound (every family, code or session a user has).

PostgreSQL's protocol takes at most 65,535 parameters in a statement: past them psycopg refuses
the statement ('number of parameters must be between 0 and 65535'), where SQLite (250,000 in
Debian's build) answered. So `sessions end USER` or a password change failed on PostgreSQL alone
for a user whose account kept more codes or sessions than that (a monitoring account that signs
in every second keeps 86,400 codes a day). A list is sent in chunks that every database takes
(SQLite's own default limit is 32,766).
"""

from collections.abc import Iterable, Iterator

CHUNK = 10_000


def chunks(values: Iterable) -> Iterator[list]:
    """The values, in lists of at most CHUNK (none for no values)."""
    values = list(values)
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]
