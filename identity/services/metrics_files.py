"""The metrics files of a process that has ended, added into those of the processes gone before it.

prometheus_client's multiprocess mode keeps each process's counts in files named by its process
id (PROMETHEUS_MULTIPROC_DIR), and every scrape reads them all. A worker recycled every
GUNICORN_MAX_REQUESTS, or an operator's command run from cron with the service's environment, left
its files for good (1.4 s and 70 MB a scrape per thousand). When a process ends, its summed values
(counters, histograms, summaries) are added into `<kind>_0.db` and its files removed, holding
METRICS_LOCK, which a scrape holds shared while it reads (identity/services/metrics.py,
exposition): a scrape counts them once, before or after.

Only the standard library and prometheus_client, no import of the app: gunicorn.conf.py loads this
file by its path in the master (child_exit), which must not import the app.
"""

from __future__ import annotations

import fcntl
import os

from prometheus_client.mmap_dict import MmapedDict

#: in PROMETHEUS_MULTIPROC_DIR: held shared by a scrape, exclusive by a fold
METRICS_LOCK = "metrics.lock"
#: the process id in the names of the files that hold the counts of the processes gone (no process has it)
GONE_PID = 0
#: the kinds whose values add up across processes
SUMMED = ("counter", "histogram", "summary")


def fold_into_gone(directory: str | None, pid: int) -> None:
    """Add the ended process `pid`'s summed values into <kind>_0.db and remove its files."""
    if not directory or not os.path.isdir(directory):
        return
    with open(os.path.join(directory, METRICS_LOCK), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for kind in SUMMED:
            path = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(path):
                continue
            found = MmapedDict.read_all_values_from_file(path)
            gone = MmapedDict(os.path.join(directory, f"{kind}_{GONE_PID}.db"))
            try:
                for key, value, timestamp, _ in found:
                    gone.write_value(key, gone.read_value(key)[0] + value, timestamp)
            finally:
                gone.close()
            os.remove(path)
