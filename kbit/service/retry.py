"""The one retry policy for transient failures (tenacity): exponential backoff, bounded in time.

    for attempt in transient(DATABASE_ERRORS, seconds=600):
        with attempt:
            write()

Used for the database writes of a worker's group (a finished result waits for the database to come
back, within its lease), a call to the scheduler actor while Ray restarts it, and a Ray client
connect. A permanent error is never retried: only the exception types given are.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from kbit.errors import DatabaseUnreachable

log = logging.getLogger("kbit.retry")

# The database went away (restart, network, failover); not a constraint or a bad statement.
DATABASE_ERRORS = (DatabaseUnreachable, OperationalError, InterfaceError)


def transient(exceptions: tuple, *, seconds: float, first_wait: float = 0.5, max_wait: float = 10.0,
              attempts: int | None = None) -> Retrying:
    """Retry on `exceptions` with waits of first_wait, 2x, 4x ... (at most max_wait) for up to
    `seconds` (and at most `attempts` tries, when given); then the last error is raised."""
    stop = stop_after_delay(seconds)
    if attempts is not None:
        stop = stop | stop_after_attempt(attempts)
    return Retrying(
        retry=retry_if_exception_type(exceptions),
        wait=wait_exponential(multiplier=first_wait, max=max_wait),
        stop=stop,
        reraise=True,
        before_sleep=before_sleep_log(log, logging.WARNING, exc_info=False),
    )
