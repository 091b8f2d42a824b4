"""Time as integer epoch seconds, the unit of every timestamp column."""

import time


def now() -> int:
    return int(time.time())
