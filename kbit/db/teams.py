"""Teams and their API tokens: a token is shown once at creation and stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from kbit import settings
from kbit.db.clock import utcnow
from kbit.db.models import Team
from kbit.errors import AuthError, Conflict, NotFound, PermissionDenied

TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


def check_team_name(name: str) -> str:
    if not isinstance(name, str) or not TEAM_NAME.match(name):
        raise ValueError(
            f"team name {name!r} is not allowed; use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def _check_max_priority(value) -> int:
    low, high = settings.PRIORITIES
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"max priority {value!r} is not allowed; use a whole number from {low} to {high}")
    return value


def create_team(session: Session, name: str, max_priority: int = 0) -> str:
    """Create a team and return its API token (only this once; the database keeps a hash)."""
    check_team_name(name)
    _check_max_priority(max_priority)
    if session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise Conflict(f"team {name!r} already exists; pick another name, or `kbit team rotate {name}` to issue it a "
                       "new token")
    token = secrets.token_urlsafe(32)
    session.add(Team(name=name, token_hash=hash_token(token), created_at=utcnow(), max_priority=max_priority))
    session.flush()
    return token


def rotate_token(session: Session, name: str) -> str:
    """Issue a new token for an existing team (the old one stops working) and return it."""
    team = get_team(session, name)
    token = secrets.token_urlsafe(32)
    team.token_hash = hash_token(token)
    session.flush()
    return token


def get_team(session: Session, name: str) -> Team:
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise NotFound(f"team {name!r} does not exist; create it first: `kbit team create {name}`")
    return team


def verify_token(session: Session, name: str, token: str) -> None:
    """Raise AuthError unless `token` is the current token of team `name`."""
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        raise AuthError(f"unknown team {name!r}; ask an administrator to create it, or check the --team name")
    if not isinstance(token, str) or not hmac.compare_digest(team.token_hash, hash_token(token)):
        raise AuthError(f"wrong token for team {name!r}; use the token printed when the team was created")


def set_max_priority(session: Session, name: str, max_priority: int) -> None:
    """An operator's decision: the highest priority team `name` may submit at."""
    get_team(session, name).max_priority = _check_max_priority(max_priority)
    session.flush()


def check_priority(session: Session, name: str, priority: int) -> None:
    """PermissionDenied when `priority` is above what team `name` may submit at."""
    allowed = get_team(session, name).max_priority
    if priority > allowed:
        raise PermissionDenied(
            f"priority {priority} is above team {name!r}'s limit of {allowed}; submit at {allowed} or lower, or ask an "
            f"operator to run `kbit team priority {name} {priority}`"
        )


def list_teams(session: Session) -> list[str]:
    return list(session.scalars(select(Team.name).order_by(Team.name)))
