"""A team's token on this machine: $KBIT_TOKEN, else the token file $KBIT_HOME/<team>-token (which
`kbit demo` and `kbit team create/rotate` write, readable by this user only)."""

from __future__ import annotations

import sys
from pathlib import Path

from kbit import settings
from kbit.errors import UsageError


def token_file(team: str) -> Path:
    """Where a team's token may be kept on this machine ($KBIT_HOME/<team>-token); `kbit demo`
    keeps the demo team's there, and commands read it when KBIT_TOKEN is not set."""
    return settings.kbit_home() / f"{team}-token"


def require_token(team: str) -> str:
    """$KBIT_TOKEN, else the team's token file (saying so on stderr), else a UsageError naming both
    and the command that issues a new token."""
    token = settings.token()
    if token:
        return token
    path = token_file(team)
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if token:
        print(f"kbit: KBIT_TOKEN is not set; using team {team}'s token from {path}", file=sys.stderr)
        return token
    raise UsageError(
        f"no token for team {team!r}; export KBIT_TOKEN=<the token `kbit team create {team}` printed>, or keep it "
        f"in {path}; lost it? `kbit team rotate {team}` prints a new one (the old one stops working)"
    )


def save_token(team: str, token: str) -> Path:
    """Write a team's token file, readable by this user only."""
    path = token_file(team)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)
    path.chmod(0o600)
    return path
