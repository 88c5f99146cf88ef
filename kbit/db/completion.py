"""complete_run: a finished run's metrics, bit report, provenance and samples, stored exactly once."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kbit.db.leases import locked_run
from kbit.db.models import BitReport, Result, Run, Sample
from kbit.db.util import now_value


def _metric_rows(run_id: int, metrics: list[dict]) -> list[dict]:
    rows: dict[tuple[str, str], dict] = {}
    for m in metrics:
        key = (str(m["task"]), str(m["metric"]))
        stderr = m.get("stderr")
        rows.setdefault(key, {
            "run_id": run_id, "task": key[0], "metric": key[1], "value": float(m["value"]),
            "stderr": None if stderr is None else float(stderr),
        })
    return list(rows.values())


def _check_result(result: dict) -> None:
    if not isinstance(result, dict) or result.get("status") not in ("done", "failed"):
        raise ValueError(
            "complete_run: result must be RunResult.to_dict() with status 'done' or 'failed', "
            f"got {result.get('status') if isinstance(result, dict) else type(result).__name__!r}"
        )
    if result["status"] == "done":
        bad = [m for m in result.get("metrics") or [] if not {"task", "metric", "value"} <= set(m)]
        if bad:
            raise ValueError(f"complete_run: metrics need task, metric and value; got {bad[:3]}")
        bits = result.get("bits")
        if bits is not None and not {"n_params", "n_quantized", "bits_per_param", "total_bits"} <= set(bits):
            raise ValueError(f"complete_run: bits needs n_params, n_quantized, bits_per_param, total_bits; got {bits}")


def complete_run(session: Session, run_id: int, result: dict, *, worker: str) -> bool:
    """Store a finished run's RunResult.to_dict(); return True when this call stored it.

    A run that is already done (or cached) ignores a second report, so a retried attempt that
    reports twice is stored once. A late report from a worker whose lease expired still counts.
    If another run with the same cache key finished first, this one becomes `cached` pointing at
    it. A `failed` result marks the run failed for good (its error is kept).
    """
    _check_result(result)
    run = locked_run(session, run_id)
    if run.status in ("done", "cached"):
        return False
    now = now_value(session)
    common = {
        "lease_owner": None, "lease_expires_at": None, "finished_at": now, "worker": worker,
        "device": result.get("device"), "wall_time_s": result.get("wall_time_s"),
        "peak_memory_bytes": result.get("peak_memory_bytes"), "provenance": result.get("provenance"),
    }
    if result["status"] == "failed":
        session.execute(
            update(Run).where(Run.id == run_id).values(
                status="failed", error_type=result.get("error_type"), error=result.get("error") or "failed", **common
            )
        )
        return True
    try:
        with session.begin_nested():
            session.execute(
                update(Run).where(Run.id == run_id).values(status="done", error_type=None, error=None, **common)
            )
            metric_rows = _metric_rows(run_id, result.get("metrics") or [])
            if metric_rows:
                session.execute(insert(Result), metric_rows)
            if result.get("bits"):
                bits = result["bits"]
                session.execute(insert(BitReport).values(
                    run_id=run_id, n_params=int(bits["n_params"]), n_quantized=int(bits["n_quantized"]),
                    bits_per_param=float(bits["bits_per_param"]), total_bits=float(bits["total_bits"]),
                ))
            samples = result.get("samples") or []
            if samples:
                session.execute(insert(Sample), [
                    {"run_id": run_id, "task": str(x.get("task", "")), "doc_id": x.get("doc_id"), "data": x}
                    for x in samples
                ])
    except IntegrityError:
        # The partial unique index on done cache keys: an identical run finished first.
        source = session.scalar(select(Run.id).where(Run.cache_key == run.cache_key, Run.status == "done"))
        if source is None:
            raise
        session.execute(update(Run).where(Run.id == run_id).values(status="cached", cached_from_id=source, **common))
        return False
    return True
