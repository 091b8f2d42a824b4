"""A granian factory for tests/test_granian_launcher.py: the real worker app, built
SLOW_START_SECONDS late by every worker after the first (the first creates SLOW_START_MARKER),
as a successor started on a loaded machine is."""

import os
import time

import granian_server


def app():
    marker = os.environ["SLOW_START_MARKER"]
    if os.path.exists(marker):
        time.sleep(float(os.environ["SLOW_START_SECONDS"]))
    else:
        open(marker, "w").close()
    return granian_server.worker_app()
