"""The GPU memory a (model, revision) was measured to need: the largest peak of its runs done on a GPU."""

from __future__ import annotations

from dbtest_helpers import CONFIGS, done_result, make_run
from sqlalchemy import select

from kbit.db import queries, queue, session_scope
from kbit.db.models import Run

GIB = 2**30


def finish(engine, runs: list[dict], outcomes: list[tuple[str, str | None, int | None]]) -> None:
    """Enqueue `runs`, claim them all, and end run i as outcomes[i] = (status, device, peak bytes)."""
    by_key = dict(zip((r["cache_key"] for r in runs), outcomes, strict=True))
    with session_scope(engine) as s:
        queue.enqueue_sweep(s, team="nlp", name="mem", spec={"m": 1}, runs=runs)
    while True:
        with session_scope(engine) as s:
            claimed = queue.claim_runs(s, worker="w", limit=len(runs))  # one (model, revision) group a claim
        if not claimed:
            break
        with session_scope(engine) as s:
            keys = dict(s.execute(select(Run.id, Run.cache_key).where(Run.id.in_([c.run_id for c in claimed]))).all())
            for c in claimed:
                status, device, peak = by_key[keys[c.run_id]]
                result = dict(done_result(c.config), device=device, peak_memory_bytes=peak)
                if status == "failed":
                    result.update(status="failed", error_type="out_of_memory", error="CUDA out of memory", metrics=[])
                assert queue.complete_run(s, c.run_id, result, worker="w")
    with session_scope(engine) as s:
        statuses = sorted(s.scalars(select(Run.status)).all())
    assert statuses == sorted(o[0] for o in outcomes)


def test_the_largest_peak_of_runs_done_on_a_gpu(engine, team_token):
    runs = [make_run(i, "facebook/opt-1.3b", config=CONFIGS[i % 4], cache_key=f"k{i}") for i in range(5)]
    runs += [make_run(5, "facebook/opt-1.3b", revision="v2", cache_key="k5"),
             make_run(6, "facebook/opt-125m", cache_key="k6")]
    finish(engine, runs, [
        ("done", "NVIDIA H100 80GB HBM3", 3 * GIB),
        ("done", "NVIDIA H100 80GB HBM3", 5 * GIB),       # the answer
        ("done", "cpu", 40 * GIB),                        # a CPU run's peak is resident memory, not GPU
        ("failed", "NVIDIA H100 80GB HBM3", 70 * GIB),    # ran out of memory: no measurement of the need
        ("done", None, 50 * GIB),                         # no device recorded
        ("done", "NVIDIA H100 80GB HBM3", 9 * GIB),       # another revision
        ("done", "NVIDIA A100-SXM4-40GB", 8 * GIB),       # another model
    ])
    with session_scope(engine) as s:
        assert queries.learned_memory_bytes(s, "facebook/opt-1.3b", "main") == 5 * GIB
        assert queries.learned_memory_bytes(s, "facebook/opt-1.3b", "v2") == 9 * GIB
        assert queries.learned_memory_bytes(s, "facebook/opt-125m", "main") == 8 * GIB
        assert isinstance(queries.learned_memory_bytes(s, "facebook/opt-1.3b", "main"), int)


def test_none_without_a_gpu_measurement(engine, team_token):
    with session_scope(engine) as s:
        assert queries.learned_memory_bytes(s, "facebook/opt-1.3b", "main") is None  # no runs at all
    runs = [make_run(i, "facebook/opt-1.3b", cache_key=f"k{i}") for i in range(4)]
    finish(engine, runs, [("done", "cpu", GIB), ("done", "none", GIB), ("done", "", GIB),
                          ("failed", "NVIDIA H100 80GB HBM3", GIB)])
    with session_scope(engine) as s:
        assert queries.learned_memory_bytes(s, "facebook/opt-1.3b", "main") is None
        assert queries.learned_memory_bytes(s, "facebook/opt-1.3b", "v2") is None
