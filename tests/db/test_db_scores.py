"""Per-document scores: the binary encoding, complete_run storing them with the rest of a result
(or nothing at all), and queries.document_scores reading them back, cached runs included."""

from __future__ import annotations

import numpy as np
import pytest
from dbtest_helpers import done_result, make_run
from sqlalchemy import delete, event, func, select
from sqlalchemy.exc import IntegrityError

from kbit.db import queries, queue, session_scope
from kbit.db.models import DocumentScore, Result, Run, RunBits, Sample
from kbit.db.scorecodec import decode_scores, encode_scores

CHOICE_ACC = {"task": "kbit_choice", "metric": "acc", "doc_ids": [0, 1, 2, 5], "values": [1.0, 0.0, 0.0, 1.0],
              "weights": None}
CHOICE_NORM = {**CHOICE_ACC, "metric": "acc_norm", "values": [1.0, 1.0, 0.0, 1.0]}
LASTWORD_ACC = {"task": "kbit_lastword", "metric": "acc", "doc_ids": [3, 4], "values": [0.0, 1.0], "weights": None}
HELDOUT_BPB = {"task": "kbit_heldout", "metric": "bits_per_byte", "doc_ids": [0, 1], "values": [812.5, 90.25],
               "weights": [300.0, 41.0]}
SCORES = [CHOICE_ACC, CHOICE_NORM, LASTWORD_ACC, HELDOUT_BPB]


def with_scores(config: dict, scores=SCORES, value: float = 0.5, **kw) -> dict:
    return {**done_result(config, value, **kw), "scores": scores}


def finish(engine, runs, results, name="demo"):
    """Enqueue `runs` as one sweep, claim them, complete each with its result; the claimed runs."""
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name=name, spec={"name": name}, runs=runs)
    with session_scope(engine) as s:
        claimed = queue.claim_runs(s, worker="w", limit=100)
    with session_scope(engine) as s:
        for run, result in zip(claimed, results):
            queue.complete_run(s, run.run_id, result(run.config), worker="w")
    return claimed


def counts(engine):
    with session_scope(engine) as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Result, RunBits, DocumentScore, Sample))


def assert_entry(got: dict, entry: dict):
    assert got["doc_ids"].dtype == np.int64 and got["values"].dtype == np.float64
    assert got["doc_ids"].tolist() == entry["doc_ids"] and got["values"].tolist() == entry["values"]
    if entry["weights"] is None:
        assert got["weights"] is None
    else:
        assert got["weights"].dtype == np.float64 and got["weights"].tolist() == entry["weights"]


# -- the encoding ------------------------------------------------------------------------------

@pytest.mark.parametrize("weights", [None, [2.0, 3.5, 1e300]])
def test_encoding_round_trips(weights):
    ids, values = [0, 7, 2**31 - 1], [0.1, -1e-300, float(np.pi)]
    row = encode_scores(ids, values, weights)
    assert row["n_docs"] == 3 and len(row["doc_ids"]) == 12 and len(row["values"]) == 24
    assert (row["weights"] is None) == (weights is None)
    back = decode_scores(row["doc_ids"], row["values"], row["weights"])
    assert back["doc_ids"].tolist() == ids and back["values"].tolist() == values
    assert (back["weights"] is None) if weights is None else back["weights"].tolist() == weights
    # memoryviews (what some drivers return for binary columns) decode alike
    again = decode_scores(memoryview(row["doc_ids"]), memoryview(row["values"]), None)
    assert again["values"].tolist() == values and again["values"].flags.writeable


def test_encoding_is_little_endian_int32_and_float64():
    row = encode_scores([1, 258], [1.0, 0.5], [2.0, 4.0])
    assert row["doc_ids"] == b"\x01\x00\x00\x00\x02\x01\x00\x00"
    assert row["values"] == np.array([1.0, 0.5], dtype="<f8").tobytes()
    assert encode_scores([], [])["n_docs"] == 0
    assert decode_scores(b"", b"", None)["doc_ids"].tolist() == []


def test_encoding_rejects_bad_arrays():
    with pytest.raises(ValueError, match="one length"):
        encode_scores([1, 2], [0.5])
    with pytest.raises(ValueError, match="weights"):
        encode_scores([1, 2], [0.5, 0.5], [1.0])
    with pytest.raises(ValueError, match="int32"):
        encode_scores([2**31], [1.0])


# -- storing and reading ----------------------------------------------------------------------

def test_scores_are_stored_and_read_back(engine, team_token):
    (a, b) = finish(engine, [make_run(0), make_run(1)], [with_scores, lambda c: with_scores(c, scores=None)])
    assert counts(engine) == (6, 2, 4, 0)
    with session_scope(engine) as s:
        acc = queries.document_scores(s, [a.run_id, b.run_id, 999], "kbit_choice", "acc")
        bpb = queries.document_scores(s, [a.run_id], "kbit_heldout", "bits_per_byte")
        assert queries.document_scores(s, [a.run_id], "kbit_choice", "bits_per_byte") == {}
        assert queries.document_scores(s, [], "kbit_choice", "acc") == {}
        n_docs = dict(s.execute(select(DocumentScore.task, DocumentScore.n_docs).where(DocumentScore.metric == "acc")).all())
    assert set(acc) == {a.run_id} and set(acc[a.run_id]) == {"kbit_choice"}  # b has none; 999 does not exist
    assert_entry(acc[a.run_id]["kbit_choice"], CHOICE_ACC)
    assert_entry(bpb[a.run_id]["kbit_heldout"], HELDOUT_BPB)
    assert n_docs == {"kbit_choice": 4, "kbit_lastword": 2}


def test_mean_zero_shot_gives_every_tasks_accuracy(engine, team_token):
    (a,) = finish(engine, [make_run(0)], [with_scores])
    with session_scope(engine) as s:
        got = queries.document_scores(s, [a.run_id], "mean_zero_shot", "acc")
        assert queries.document_scores(s, [a.run_id], "mean_zero_shot", "acc_norm") == {}
    assert set(got[a.run_id]) == {"kbit_choice", "kbit_lastword"}
    assert_entry(got[a.run_id]["kbit_choice"], CHOICE_ACC)
    assert_entry(got[a.run_id]["kbit_lastword"], LASTWORD_ACC)


def test_a_cached_run_reads_its_source_runs_scores(engine, team_token):
    # two sweeps ask for one cache key before either finishes: the second to finish becomes cached
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="one", spec={}, runs=[make_run(0, cache_key="same")])
        queue.enqueue_sweep(s, team="nlp", name="two", spec={}, runs=[make_run(1, "other", cache_key="same")])
    with session_scope(engine) as s:
        first, second = queue.claim_runs(s, worker="w") + queue.claim_runs(s, worker="w")
    with session_scope(engine) as s:
        assert queue.complete_run(s, first.run_id, with_scores(first.config), worker="w") is True
        other = [{**CHOICE_ACC, "values": [0.0] * 4}]
        assert queue.complete_run(s, second.run_id, with_scores(second.config, scores=other), worker="w") is False
    # and a third sweep asks again after the result exists: cached at once, never run
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="vision", name="again", spec={}, runs=[make_run(2, cache_key="same")])
    with session_scope(engine) as s:
        third = s.scalar(select(Run.id).where(Run.status == "cached", Run.id != second.run_id))
        assert s.get(Run, second.run_id).cached_from_id == first.run_id == s.get(Run, third).cached_from_id
        got = queries.document_scores(s, [first.run_id, second.run_id, third], "kbit_choice", "acc")
    assert counts(engine)[2] == 4  # the source's rows only
    assert set(got) == {first.run_id, second.run_id, third}
    for run_id in got:
        assert_entry(got[run_id]["kbit_choice"], CHOICE_ACC)


def test_many_run_ids_take_one_query_per_chunk(engine, team_token, monkeypatch):
    claimed = finish(engine, [make_run(i) for i in range(5)], [with_scores] * 5)
    ids = [r.run_id for r in claimed]
    monkeypatch.setattr(queries, "CHUNK", 2)
    statements = []

    def count(conn, cursor, statement, *args):
        if "document_scores" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(engine) as s:
            got = queries.document_scores(s, ids + [ids[0], 10_000], "kbit_lastword", "acc")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 3  # 6 distinct ids, 2 per query
    assert sorted(got) == ids
    assert all(got[i]["kbit_lastword"]["values"].tolist() == [0.0, 1.0] for i in ids)


def test_deleting_a_run_deletes_its_scores(engine, team_token):
    (a,) = finish(engine, [make_run(0)], [with_scores])
    with session_scope(engine) as s:
        s.execute(delete(Result).where(Result.run_id == a.run_id))
        s.execute(delete(RunBits).where(RunBits.run_id == a.run_id))
        s.execute(delete(Run).where(Run.id == a.run_id))
    assert counts(engine)[2] == 0


# -- all or nothing ---------------------------------------------------------------------------

@pytest.mark.parametrize("scores, words", [
    ([CHOICE_ACC, CHOICE_ACC], "kbit_choice/acc twice"),
    ([{**CHOICE_ACC, "values": [1.0]}], "one length"),
    ([{"task": "kbit_choice", "metric": "acc"}], "task, metric, doc_ids and values"),
])
def test_bad_scores_are_rejected_before_writing(engine, team_token, scores, words):
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="demo", spec={}, runs=[make_run(0)])
    with session_scope(engine) as s:
        (r,) = queue.claim_runs(s, worker="w")
    with pytest.raises(ValueError, match=words):
        with session_scope(engine) as s:
            queue.complete_run(s, r.run_id, with_scores(r.config, scores=scores, samples=[{"task": "t", "doc_id": 1}]),
                               worker="w")
    with session_scope(engine) as s:
        assert s.get(Run, r.run_id).status == "running"
    assert counts(engine) == (0, 0, 0, 0)


def test_a_failure_while_writing_scores_writes_nothing(engine, team_token, monkeypatch):
    """The rows pass the checks but the database refuses them (here: a duplicate key, after the
    metrics and the bit report were written): the whole result rolls back, the run stays running."""
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="demo", spec={}, runs=[make_run(0)])
    with session_scope(engine) as s:
        (r,) = queue.claim_runs(s, worker="w")
    real = queue._score_rows
    monkeypatch.setattr(queue, "_score_rows", lambda run_id, scores: real(run_id, scores) * 2)
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            queue.complete_run(s, r.run_id, with_scores(r.config, samples=[{"task": "t", "doc_id": 1}]), worker="w")
    with session_scope(engine) as s:
        assert s.get(Run, r.run_id).status == "running"
    assert counts(engine) == (0, 0, 0, 0)
    monkeypatch.setattr(queue, "_score_rows", real)
    with session_scope(engine) as s:
        assert queue.complete_run(s, r.run_id, with_scores(r.config), worker="w") is True
    assert counts(engine) == (3, 1, 4, 0)
