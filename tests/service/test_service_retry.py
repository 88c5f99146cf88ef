"""kbit.service.retry: the one policy for transient failures."""

from __future__ import annotations

import time

import pytest

from kbit.errors import DatabaseUnreachable
from kbit.service.retry import DATABASE_ERRORS, transient


def test_a_transient_error_is_retried_until_it_passes():
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise DatabaseUnreachable("server restarting")
        return "stored"

    for attempt in transient(DATABASE_ERRORS, seconds=10, first_wait=0.01):
        with attempt:
            result = flaky()
    assert result == "stored" and len(calls) == 3
    assert calls[2] - calls[1] >= calls[1] - calls[0]  # the pause grows


def test_a_permanent_error_is_raised_at_once():
    calls = []
    with pytest.raises(ValueError):
        for attempt in transient(DATABASE_ERRORS, seconds=10, first_wait=0.01):
            with attempt:
                calls.append(1)
                raise ValueError("bad config")
    assert calls == [1]


def test_retries_are_bounded_in_tries_and_time():
    calls = []
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable):
        for attempt in transient(DATABASE_ERRORS, seconds=10, first_wait=0.01, attempts=4):
            with attempt:
                calls.append(1)
                raise DatabaseUnreachable("down")
    assert len(calls) == 4
    with pytest.raises(DatabaseUnreachable):
        for attempt in transient(DATABASE_ERRORS, seconds=0.3, first_wait=0.05, max_wait=0.05):
            with attempt:
                raise DatabaseUnreachable("down")
    assert time.monotonic() - started < 5
