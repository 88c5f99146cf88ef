"""The errors the database layer raises: each names the problem and the fix in one message."""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of every error `kbit.db` raises on purpose."""


class DatabaseUnreachable(DatabaseError):
    """The database named by a URL cannot be opened (server down, wrong host, no permission)."""


class AuthError(DatabaseError):
    """An unknown team or a wrong API token."""


class NotFound(DatabaseError):
    """A sweep, run or team that does not exist."""


class PermissionDenied(DatabaseError):
    """A team acting on another team's sweep."""


class Conflict(DatabaseError):
    """A name that must be unique is already taken (e.g. creating a team twice)."""
