"""Every error a user can cause, in one place: each names the problem and the fix in its message.

The CLI shows any `KbitError` as one line and exits non-zero; the dashboard shows it as a
message. They cross Ray unchanged: the scheduler actor's methods raise them, and the client
re-raises the original class (see `kbit.cluster.client`). Any other exception is a bug.
This module imports nothing of kbit, so every part may raise these.
"""

from __future__ import annotations


class KbitError(Exception):
    """Base class of every error kbit raises on purpose for a user to fix."""


class UsageError(KbitError, ValueError):
    """A command used in a way that cannot work (missing token, team, file ...)."""


class SweepError(KbitError, ValueError):
    """A sweep (file or spec) with problems; the message lists all of them, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, list(problems)
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            text = f"{source} has {len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)
        super().__init__(text)

    def __reduce__(self):  # pickled across Ray with its own arguments, not the formatted text
        return (type(self), (self.source, self.problems))


class DatabaseError(KbitError):
    """Base class of every error the database layer raises on purpose."""


class DatabaseUnreachable(DatabaseError, ConnectionError):
    """The database named by a URL cannot be opened (server down, wrong host, no permission)."""


class AuthError(DatabaseError):
    """An unknown team or a wrong API token."""


class NotFound(DatabaseError):
    """A sweep, run or team that does not exist."""


class PermissionDenied(DatabaseError):
    """A team acting on another team's sweep."""


class Conflict(DatabaseError):
    """A name that must be unique is already taken (e.g. creating a team twice)."""


class SchemaMissing(DatabaseError):
    """A reader (the dashboard) found a database whose schema is older than this kbit."""


class TooManyRuns(KbitError):
    """A dashboard view over more finished runs than it analyses at once (KBIT_DASHBOARD_MAX_RUNS)."""


class ClusterUnreachable(KbitError, ConnectionError):
    """No Ray cluster answers at the given address."""


class SchedulerUnavailable(KbitError, RuntimeError):
    """The scheduler actor could not be started or reached on the cluster."""


class ServiceError(KbitError, RuntimeError):
    """`kbit up` / `kbit down` cannot start or stop the local service as asked."""


class RateLimited(KbitError):
    """Too many requests that change something, with one token, in a short time: wait and retry."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ExportError(KbitError, ValueError):
    """`kbit export` cannot write or check a run's checkpoint: the run is not done, its model cannot be
    loaded here, the output folder is taken, or a checkpoint does not match its manifest."""
