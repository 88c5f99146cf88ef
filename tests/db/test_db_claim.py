"""claim_runs / heartbeat / fail_run / requeue_expired: grouping, order, leases and bounded attempts."""

from __future__ import annotations

import datetime as dt

import pytest
from dbtest_helpers import EVAL, done_result, make_run
from sqlalchemy import select

from kbit.db import queue, session_scope
from kbit.db.clock import utcnow
from kbit.db.models import Run


def enqueue(engine, runs, name="demo", priority=0, max_attempts=3) -> int:
    with session_scope(engine) as s:
        return queue.enqueue_sweep(
            s, team="nlp", name=name, spec={"n": name}, runs=runs, priority=priority, max_attempts=max_attempts
        )


def claim(engine, worker="w1", limit=16, lease_seconds=120):
    with session_scope(engine) as s:
        return queue.claim_runs(s, worker=worker, limit=limit, lease_seconds=lease_seconds)


def run_row(engine, run_id):
    with session_scope(engine) as s:
        return s.execute(select(Run).where(Run.id == run_id)).scalar_one()


def test_claim_takes_one_group_in_age_order(engine, team_token):
    other_eval = EVAL | {"num_fewshot": 5}
    runs = [
        make_run(0, "a"), make_run(1, "b"), make_run(2, "a"), make_run(3, "a", eval_spec=other_eval),
        make_run(4, "a", revision="v2"), make_run(5, "a"),
    ]
    enqueue(engine, runs)
    first = claim(engine, limit=10)
    assert [r.run_id for r in first] == [1, 3, 6]  # model a, main, EVAL: same group as the oldest run
    assert all(r.attempt == 1 and r.model == "a" and r.revision == "main" and r.eval == EVAL for r in first)
    assert first[0].config == runs[0]["config"] and first[0].sweep_id == 1
    assert [r.run_id for r in claim(engine, limit=10)] == [2]
    assert [r.run_id for r in claim(engine, limit=10)] == [4]
    assert [r.run_id for r in claim(engine, limit=10)] == [5]
    assert claim(engine) == []


def test_priority_beats_age_and_limit_holds(engine, team_token):
    enqueue(engine, [make_run(i, "low") for i in range(3)], name="old-low", priority=0)
    enqueue(engine, [make_run(i, "high") for i in range(3)], name="new-high", priority=10)
    got = claim(engine, limit=2)
    assert [r.model for r in got] == ["high", "high"] and [r.run_id for r in got] == [4, 5]
    assert [r.run_id for r in claim(engine, limit=5)] == [6]
    assert [r.model for r in claim(engine, limit=5)] == ["low"] * 3


def test_a_limit_given_as_a_function_is_asked_for_the_chosen_groups_model(engine, team_token):
    enqueue(engine, [make_run(i, "a") for i in range(4)] + [make_run(i, "b") for i in range(4)])
    asked = []

    def size(model, revision):
        asked.append((model, revision))
        return {"a": 3, "b": 1}[model]

    assert [r.model for r in claim(engine, limit=size)] == ["a"] * 3
    assert [r.model for r in claim(engine, limit=size)] == ["a"]  # the oldest queued run is still a's
    assert [r.model for r in claim(engine, limit=size)] == ["b"]
    assert asked == [("a", "main"), ("a", "main"), ("b", "main")]
    with pytest.raises(ValueError, match="limit gave 0 for b; it must give an int >= 1"):
        claim(engine, limit=lambda model, revision: 0)


def test_claim_sets_lease_and_heartbeat_extends_it(engine, team_token):
    enqueue(engine, [make_run(i) for i in range(3)])
    before = utcnow()
    got = claim(engine, worker="node-1:42", lease_seconds=60)
    row = run_row(engine, got[0].run_id)
    assert row.status == "running" and row.lease_owner == "node-1:42" and row.worker == "node-1:42"
    # a claimed run waits its turn in the group: it starts when its worker marks it
    assert row.attempts == 1 and row.started_at is None
    assert before + dt.timedelta(seconds=50) < row.lease_expires_at < utcnow() + dt.timedelta(seconds=70)
    ids = [r.run_id for r in got]
    with session_scope(engine) as s:
        assert queue.mark_started(s, ids[0], worker="node-1:42") is True
        assert queue.mark_started(s, ids[1], worker="someone-else") is False
    assert run_row(engine, ids[0]).started_at >= before and run_row(engine, ids[1]).started_at is None
    with session_scope(engine) as s:
        assert queue.heartbeat(s, ids, worker="node-1:42", lease_seconds=600) == ids
        assert queue.heartbeat(s, ids, worker="someone-else", lease_seconds=600) == []
        assert queue.heartbeat(s, [], worker="node-1:42") == []
    assert run_row(engine, ids[0]).lease_expires_at > utcnow() + dt.timedelta(seconds=500)


def test_bad_claim_arguments(engine, team_token):
    with session_scope(engine) as s:
        with pytest.raises(ValueError, match="limit"):
            queue.claim_runs(s, worker="w", limit=0)
        with pytest.raises(ValueError, match="lease_seconds"):
            queue.claim_runs(s, worker="w", lease_seconds=0)


def test_fail_run_retries_until_max_attempts_then_fails_with_last_error(engine, team_token):
    enqueue(engine, [make_run(0)], max_attempts=2)
    (r,) = claim(engine)
    with session_scope(engine) as s:
        assert queue.fail_run(s, r.run_id, error="CUDA hiccup", worker="w1") == "queued"
    row = run_row(engine, r.run_id)
    assert (row.status, row.error, row.lease_owner) == ("queued", "CUDA hiccup", None)
    (again,) = claim(engine, worker="w2")
    assert again.attempt == 2
    with session_scope(engine) as s:
        assert queue.fail_run(s, r.run_id, error="stale report", worker="w1") == "running"  # w1 holds nothing
        assert queue.fail_run(s, r.run_id, error="CUDA hiccup again", worker="w2") == "failed"
    row = run_row(engine, r.run_id)
    assert (row.status, row.error, row.attempts) == ("failed", "CUDA hiccup again", 2)
    assert row.finished_at is not None
    assert claim(engine) == []


def test_non_retryable_failure_is_final(engine, team_token):
    enqueue(engine, [make_run(0)], max_attempts=5)
    (r,) = claim(engine)
    with session_scope(engine) as s:
        status = queue.fail_run(s, r.run_id, error="model not found", worker="w1", retryable=False,
                                error_type="model_not_found")
    assert status == "failed"
    row = run_row(engine, r.run_id)
    assert (row.status, row.error_type, row.attempts) == ("failed", "model_not_found", 1)


def test_expired_leases_return_to_queue_then_fail_after_max_attempts(engine, team_token):
    enqueue(engine, [make_run(0), make_run(1)], max_attempts=2)
    first = claim(engine, worker="dead-1", lease_seconds=30)
    assert len(first) == 2
    with session_scope(engine) as s:
        assert queue.requeue_expired(s) == []  # leases still valid
        later = utcnow() + dt.timedelta(seconds=31)
        assert queue.requeue_expired(s, now=later) == [1, 2]
    row = run_row(engine, 1)
    assert row.status == "queued" and row.attempts == 1 and "dead-1" in row.error
    second = claim(engine, worker="dead-2", lease_seconds=30)
    assert [r.attempt for r in second] == [2, 2]
    with session_scope(engine) as s:
        assert queue.requeue_expired(s, now=utcnow() + dt.timedelta(seconds=31)) == [1, 2]
    row = run_row(engine, 1)
    assert row.status == "failed" and "dead-2" in row.error and "previous error" in row.error
    assert row.error_type == "lease_expired"
    assert claim(engine) == []


def test_lease_expires_on_the_real_clock(engine, team_token):
    import time

    enqueue(engine, [make_run(0)])
    claim(engine, worker="slow", lease_seconds=0.3)
    time.sleep(0.5)
    with session_scope(engine) as s:
        assert queue.requeue_expired(s) == [1]
    assert [r.attempt for r in claim(engine, worker="fresh")] == [2]


def test_a_team_that_submits_ten_times_more_does_not_starve_the_other(engine, team_token):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="big", spec={"n": "big"},
                            runs=[make_run(i, f"m{i // 4}") for i in range(40)])  # 10 models x 4 configs
        queue.enqueue_sweep(s, team="vision", name="small", spec={"n": "small"},
                            runs=[make_run(i, "v", cache_key=f"v{i}") for i in range(4)])
    first, second, third = (claim(engine, worker=f"w{i}", limit=4) for i in range(3))
    assert {r.model for r in first} == {"m0"}  # the oldest waiting run goes first ...
    assert {r.model for r in second} == {"v"}  # ... then the team with nothing running, not nlp's m1
    assert {r.model for r in third} == {"m1"}


def test_priority_still_comes_before_fairness(engine, team_token):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="a", spec={"n": "a"}, runs=[make_run(i, "a") for i in range(2)])
        queue.enqueue_sweep(s, team="nlp", name="urgent", spec={"n": "u"}, priority=5,
                            runs=[make_run(i, "u", cache_key=f"u{i}") for i in range(2)])
        queue.enqueue_sweep(s, team="vision", name="b", spec={"n": "b"}, runs=[make_run(i, "b", cache_key=f"b{i}")
                                                                               for i in range(2)])
    assert [{r.model for r in claim(engine, worker=f"w{i}", limit=2)} for i in range(3)] == [{"u"}, {"b"}, {"a"}]


def test_a_team_quota_caps_the_runs_a_team_has_running(engine, team_token):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="big", spec={"n": "big"},
                            runs=[make_run(i, f"m{i // 4}") for i in range(12)])  # 3 models x 4 configs
    first = claim(engine, worker="w1", limit=16)
    with session_scope(engine) as s:
        capped = queue.claim_runs(s, worker="w2", limit=16, team_quota=6)
        assert len(first) == 4 and len(capped) == 2  # 4 running + 2 = the quota of 6
        assert queue.claim_runs(s, worker="w3", limit=16, team_quota=6) == []  # at quota: nothing more
        queue.enqueue_sweep(s, team="vision", name="small", spec={"n": "small"},
                            runs=[make_run(i, "v", cache_key=f"v{i}") for i in range(3)])
        other = queue.claim_runs(s, worker="w4", limit=16, team_quota=6)
        assert {r.model for r in other} == {"v"}  # another team is not held back by nlp's quota
        queue.complete_run(s, first[0].run_id, done_result(first[0].config), worker="w1")
        again = queue.claim_runs(s, worker="w5", limit=16, team_quota=6)
    assert len(again) == 1 and {r.model for r in again} == {"m1"}  # one run ended: room for one


def prefer_claim(engine, prefer, worker="w1", limit=16):
    with session_scope(engine) as s:
        return queue.claim_runs(s, worker=worker, limit=limit, lease_seconds=120, prefer=prefer)


def test_a_worker_gets_a_group_of_the_model_it_holds_before_older_ones(engine, team_token):
    enqueue(engine, [make_run(i, f"m{i // 3}") for i in range(9)])  # m0, m1, m2: 3 runs each, m0 oldest
    got = prefer_claim(engine, [("m2", "main"), ("zz", "main")])
    assert {r.model for r in got} == {"m2"} and len(got) == 3
    assert {r.model for r in prefer_claim(engine, [("zz", "main")])} == {"m0"}  # holds nothing queued: the head
    assert {r.model for r in prefer_claim(engine, [("m1", "v2")])} == {"m1"}  # other revision: not held, m1 is head
    assert prefer_claim(engine, [("m2", "main")]) == []


def test_affinity_never_jumps_a_higher_priority_or_another_teams_turn(engine, team_token):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="low", spec={"n": "low"}, runs=[make_run(i, "held") for i in range(2)])
        queue.enqueue_sweep(s, team="nlp", name="high", spec={"n": "high"}, priority=5,
                            runs=[make_run(i, "urgent", cache_key=f"u{i}") for i in range(2)])
    assert {r.model for r in prefer_claim(engine, [("held", "main")])} == {"urgent"}  # priority first
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="vision", name="v", spec={"n": "v"},
                            runs=[make_run(i, "v", cache_key=f"v{i}") for i in range(2)])
    # nlp has 2 running, vision none: vision's turn, even for a worker that holds nlp's model
    got = prefer_claim(engine, [("held", "main")], worker="w2")
    assert {r.model for r in got} == {"v"}
    assert {r.model for r in prefer_claim(engine, [("held", "main")], worker="w3")} == {"held"}


def test_leases_of_finds_the_runs_an_owner_prefix_holds(engine, team_token):
    enqueue(engine, [make_run(i, f"m{i}") for i in range(3)])
    claim(engine, worker="sched_a-1234abcd/t1", limit=1)
    claim(engine, worker="sched%b-1234abcd/t1", limit=1)
    claim(engine, worker="schedXa-1234abcd/t2", limit=1)
    with session_scope(engine) as s:
        assert queue.leases_of(s, "sched_a-") == {1: "sched_a-1234abcd/t1"}  # "_" is not a wildcard
        assert queue.leases_of(s, "sched%b-") == {2: "sched%b-1234abcd/t1"}
        assert queue.count_queued(s) == 0


def test_a_worker_avoids_a_model_another_worker_holds_while_others_wait(engine, team_token):
    enqueue(engine, [make_run(i, f"m{i // 3}") for i in range(9)])  # m0 oldest, then m1, m2
    with session_scope(engine) as s:
        first = queue.claim_runs(s, worker="w1", limit=1, avoid={"m0": 1})
        assert {r.model for r in first} == {"m1"}  # m0 is another worker's: the oldest other model
        both = queue.claim_runs(s, worker="w2", limit=1, prefer=[("m0", "main")], avoid={"m0": 1, "m1": 1})
        assert {r.model for r in both} == {"m0"}  # a model the worker holds itself comes first
        spread = queue.claim_runs(s, worker="w3", limit=1, avoid={"m0": 3, "m1": 1, "m2": 2})
        assert {r.model for r in spread} == {"m1"}  # every model is somebody's: the one the fewest have
        rest = queue.claim_runs(s, worker="w4", limit=16, avoid={"m0": 1, "m1": 1, "m2": 1})
        assert {r.model for r in rest} == {"m0"}  # as many on each: the head of the queue


def test_count_queued_counts_only_the_queued_runs_and_stops_at_its_cap(engine, team_token):
    enqueue(engine, [make_run(i, f"m{i % 3}") for i in range(10)])
    claim(engine, limit=2)  # two runs of m0 leave the queue
    with session_scope(engine) as s:
        assert queue.count_queued(s) == 8
        assert queue.count_queued(s, at_most=5) == 5
        assert queue.count_queued(s, at_most=50) == 8
