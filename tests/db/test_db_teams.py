"""Teams: a token returned once and stored hashed; unknown team and wrong token are clear errors."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kbit.db import session_scope, teams
from kbit.errors import AuthError, Conflict, NotFound


def test_token_verifies_and_is_stored_hashed(engine):
    with session_scope(engine) as s:
        token = teams.create_team(s, "nlp")
    assert len(token) >= 40
    with session_scope(engine) as s:
        teams.verify_token(s, "nlp", token)
        stored = s.execute(text("SELECT token_hash FROM teams WHERE name = 'nlp'")).scalar_one()
    assert token not in stored and stored == teams.hash_token(token)


def test_tokens_differ_per_team(engine):
    with session_scope(engine) as s:
        a, b = teams.create_team(s, "a"), teams.create_team(s, "b")
    assert a != b
    with session_scope(engine) as s, pytest.raises(AuthError, match="wrong token for team 'b'"):
        teams.verify_token(s, "b", a)


def test_unknown_team_and_wrong_token(engine):
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
    with session_scope(engine) as s:
        with pytest.raises(AuthError, match="unknown team 'ghost'"):
            teams.verify_token(s, "ghost", "whatever")
        with pytest.raises(AuthError, match="wrong token for team 'nlp'"):
            teams.verify_token(s, "nlp", "not-the-token")
        with pytest.raises(AuthError):
            teams.verify_token(s, "nlp", None)


def test_duplicate_and_bad_names_write_nothing(engine):
    with session_scope(engine) as s:
        teams.create_team(s, "nlp")
    with pytest.raises(Conflict, match="already exists"):
        with session_scope(engine) as s:
            teams.create_team(s, "nlp")
    with pytest.raises(ValueError, match="team name"):
        with session_scope(engine) as s:
            teams.create_team(s, "bad name!")
    with session_scope(engine) as s:
        assert teams.list_teams(s) == ["nlp"]


def test_rotate_token_revokes_old(engine):
    with session_scope(engine) as s:
        old = teams.create_team(s, "nlp")
    with session_scope(engine) as s:
        new = teams.rotate_token(s, "nlp")
    with session_scope(engine) as s:
        teams.verify_token(s, "nlp", new)
        with pytest.raises(AuthError):
            teams.verify_token(s, "nlp", old)
        with pytest.raises(NotFound, match="create it first"):
            teams.rotate_token(s, "ghost")
