"""A time limit that long work checks between its pieces (decoding steps, scoring chunks), so that work whose
caller has stopped waiting stops too, instead of running on in its thread and holding its model's lock (the
server's per-request timeout). Without a deadline ``check`` costs one attribute read."""
from __future__ import annotations

import contextlib
import threading
import time

from .errors import VaekitError

_local = threading.local()


class DeadlinePassed(VaekitError):
    pass


@contextlib.contextmanager
def deadline(at: float):
    """Work in this thread past ``time.monotonic() >= at`` raises DeadlinePassed at its next ``check``."""
    previous = getattr(_local, "at", None)
    _local.at = at if previous is None else min(at, previous)
    try:
        yield
    finally:
        _local.at = previous


def check() -> None:
    at = getattr(_local, "at", None)
    if at is not None and time.monotonic() >= at:
        raise DeadlinePassed("the work ran past its time limit and was stopped")
