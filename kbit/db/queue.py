"""The durable queue: the whole life cycle of a run's lease, in one place.

    claim_runs -> mark_started, heartbeat (a worker) or renew_leases (the scheduler) ... -> complete_run(s) | fail_run
    requeue_expired: leases nobody renewed go back to the queue (or fail at max_attempts)
    cancel_sweep: queued and running runs of a sweep end; their workers see it at the next heartbeat
    sweep_progress: counts by state and an ETA

Plain functions on an injected Session; the caller's `session_scope` decides when a transaction
commits. Claims on Postgres lock rows with `FOR UPDATE SKIP LOCKED`, so concurrent workers never
wait on each other or claim a run twice. SQLite has no such clause (SQLAlchemy leaves it out
there); its transactions begin with `BEGIN IMMEDIATE` (see engine.py), so one writer claims at a
time. Writing a new sweep is `kbit.db.enqueue`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Integer, String, any_, case, cast, func, insert, literal, or_, select, type_coerce, union_all, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kbit import settings
from kbit.db.clock import db_now, now_value, utcnow
from kbit.db.enqueue import enqueue_sweep
from kbit.db.models import DocumentScore, Result, Run, RunBits, Sample, Sweep, Team
from kbit.db.scorecodec import encode_scores
from kbit.errors import NotFound, PermissionDenied
from kbit.settings import IN_FLIGHT_STATES, RUN_STATES

__all__ = [
    "ClaimedRun", "RUN_STATES", "enqueue_sweep", "claim_runs", "count_queued", "heartbeat", "mark_started", "Finished",
    "complete_run", "complete_runs", "fail_run", "requeue_expired", "renew_leases", "overdue_runs", "holders", "leases_of",
    "cancel_sweep", "sweep_progress",
]


@dataclass(frozen=True)
class ClaimedRun:
    """One run handed to a worker; `attempt` counts from 1."""

    run_id: int
    sweep_id: int
    model: str
    revision: str
    config: dict
    eval: dict
    attempt: int


QUEUED = Run.status == "queued"
HEAD_COLUMNS = (Run.id, Run.model, Run.revision, Run.eval_hash, Run.priority)

# Every lookup below walks one of the queue's indexes from its equality columns (`keys`, the
# index's leading columns) in (priority, id) order. A priority level is given as a range
# (BETWEEN p AND p), not `priority = p`: with an equality Postgres drops priority from the order,
# and may then walk the primary key in id order and filter, guessing that matches are spread
# evenly, which reads every run before the first match (finished ones included). The range keeps
# (priority, id) an order only the queue's index provides.


def _top_priority(keys: list, below=None, floor=None):
    """The highest priority of the queued runs with `keys` ((column, value) pairs), as a scalar subquery."""
    where = [QUEUED, *(column == value for column, value in keys)]
    where += [] if below is None else [Run.priority < below]
    where += [] if floor is None else [Run.priority >= floor]
    return select(Run.priority).where(*where).order_by(Run.priority.desc()).limit(1).scalar_subquery()


def _oldest(keys: list, priority, columns=HEAD_COLUMNS, extra=()):
    """The queued runs with `keys` at `priority`, oldest first (a query to limit and lock)."""
    where = [QUEUED, Run.priority.between(priority, priority), *(column == value for column, value in keys), *extra]
    return select(*columns).where(*where).order_by(Run.priority, Run.id)


def _running_per_team():
    return select(Run.team_id, func.count().label("n")).where(Run.status == "running").group_by(Run.team_id).subquery()


def _queued_levels():
    """(team, priority, its oldest queued run id) for each priority at which a team has queued runs.

    A loose index scan of ix_runs_queued_team: from each team's highest queued priority down to the
    next lower one, one index lookup per step, so the cost follows the number of teams and
    priorities, never the number of queued runs.
    """
    levels = select(Team.id.label("team_id"), _top_priority([(Run.team_id, Team.id)]).label("priority"))
    levels = levels.cte("levels", recursive=True)
    lower = _top_priority([(Run.team_id, levels.c.team_id)], below=levels.c.priority)
    levels = levels.union_all(select(levels.c.team_id, lower).where(levels.c.priority.is_not(None)))
    first = _oldest([(Run.team_id, levels.c.team_id)], levels.c.priority, columns=[Run.id]).limit(1).scalar_subquery()
    return select(levels.c.team_id, levels.c.priority, first.label("first")).where(levels.c.priority.is_not(None)).subquery()


def _by_priority(session: Session, keys: list, limit: int, floor: int | None = None, extra=()) -> list:
    """Up to `limit` queued runs with `keys` ((column, value) pairs) and `extra` conditions, locked
    (SKIP LOCKED): the highest priority (not below `floor`) first, then the oldest.

    One ordered index scan per priority level, from the highest down (a queue holds few levels),
    where `ORDER BY priority DESC, id` in one query would sort every matching run.
    """
    rows, level = [], None
    while len(rows) < limit:
        level = session.scalar(select(_top_priority(keys, below=level, floor=floor)))
        if level is None:
            break
        query = _oldest(keys, level, extra=extra).limit(limit - len(rows)).with_for_update(skip_locked=True)
        rows += session.execute(query).all()
    return rows


def _head_of_queue(session: Session, team_quota: int | None = None):
    """(the run the next claim starts from, its team, how many runs its team may still start) or None.

    The highest priority first; within it, the team with the fewest runs running now (ties: the
    one waiting longest), so a team that submits ten times more does not hold every worker while
    another team's sweep waits; then that team's oldest run nobody holds a lock on. With
    `team_quota`, a team with that many runs running is passed over until one ends.
    Every step is an index lookup (`_queued_levels`), so the cost does not grow with the queue.
    """
    running = _running_per_team()
    busy = func.coalesce(running.c.n, 0)
    levels = _queued_levels()
    candidates = (
        select(levels.c.team_id, levels.c.priority, busy.label("busy"))
        .outerjoin(running, running.c.team_id == levels.c.team_id)
        .order_by(levels.c.priority.desc(), busy, levels.c.first)
    )
    if team_quota is not None:
        candidates = candidates.where(busy < team_quota)
    # The next candidate is tried only while another claimer holds every run of this one.
    for team, priority, n_running in session.execute(candidates).all():
        room = None if team_quota is None else team_quota - n_running
        head = session.execute(_oldest([(Run.team_id, team)], priority).limit(1).with_for_update(skip_locked=True)).first()
        if head is not None:
            return head, team, room
    return None  # nothing queued, every team with work is at its quota, or all its runs are being claimed


SPREAD_LEVELS = 3  # how many "fewer workers" levels a claim tries before it takes the head's model


def _queued_models(session: Session, team_keys: list) -> list[str]:
    """The models with queued runs (of the head's team): a loose index scan of ix_runs_queued_model,
    one lookup per model."""
    def next_model(after=None):
        where = [QUEUED, *(column == value for column, value in team_keys)]
        where += [] if after is None else [Run.model > after]
        order = [column for column, _ in team_keys] + [Run.model]
        return select(Run.model).where(*where).order_by(*order).limit(1).scalar_subquery()

    models = select(next_model().label("model")).cte("models", recursive=True)
    models = models.union_all(select(next_model(models.c.model)).where(models.c.model.is_not(None)))
    return list(session.scalars(select(models.c.model).where(models.c.model.is_not(None))))


def _model_heads_lateral(models: list[tuple[str, str | None]], team_keys: list, floor: int):
    """Postgres: each model's best (priority, oldest id) in one small statement, the models passed
    as arrays and walked with LATERAL lookups: the same two index lookups per model as the union
    below, but one statement whatever the number of models (the union of 80 models took 0.3 s to
    compile and plan, on every claim of a worker spreading over models)."""
    wanted = func.unnest(
        cast([m for m, _ in models], ARRAY(String)), cast([r for _, r in models], ARRAY(String)),
    ).table_valued("model", "revision", with_ordinality="i").render_derived(name="wanted")
    of_model = [QUEUED, *(column == value for column, value in team_keys), Run.model == wanted.c.model]
    level = (select(Run.priority.label("level")).where(*of_model, Run.priority >= floor)
             .order_by(Run.priority.desc()).limit(1).lateral("level"))
    first = (select(Run.id.label("first")).where(*of_model, Run.priority.between(level.c.level, level.c.level),
                                                 or_(wanted.c.revision.is_(None), Run.revision == wanted.c.revision))
             .order_by(Run.priority, Run.id).limit(1).lateral("first"))
    return (select((wanted.c.i - 1).label("i"), level.c.level, first.c.first)
            .select_from(wanted.join(level, literal(True)).join(first, literal(True))))


def _model_heads_union(models: list[tuple[str, str | None]], team_keys: list, floor: int):
    """Elsewhere (SQLite): the same lookups, one per model, in a UNION ALL."""
    lookups = []
    for i, (model, revision) in enumerate(models):
        key = [*team_keys, (Run.model, model)]
        level = _top_priority(key, floor=floor)
        extra = [Run.revision == revision] if revision else []
        first = _oldest(key, level, columns=[Run.id], extra=extra).limit(1).scalar_subquery()
        lookups.append(select(literal(i).label("i"), level.label("level"), first.label("first")))
    return union_all(*lookups)


def _oldest_of(session: Session, models: list[tuple[str, str | None]], team_keys: list, floor: int):
    """The queued run that goes first (highest priority, not below `floor`, then oldest) among
    those of `models` ((model, revision or None for any)), locked; None when none is free.

    Each model's best (priority, id) is two index lookups, all in one statement; only the winner
    is then locked, and the next model tried when another claimer holds all of its runs.
    """
    if not models:
        return None
    heads = _model_heads_lateral if session.get_bind().dialect.name == "postgresql" else _model_heads_union
    found = [row for row in session.execute(heads(models, team_keys, floor)).all() if row.first is not None]
    for i, _, first in sorted(found, key=lambda row: (-row.level, row.first)):
        locked = session.execute(select(*HEAD_COLUMNS).where(Run.id == first, QUEUED).with_for_update(skip_locked=True)).first()
        if locked is None:  # another claimer took or holds it: the model's next free run
            model, revision = models[i]
            extra = [Run.revision == revision] if revision else []
            locked = next(iter(_by_priority(session, [*team_keys, (Run.model, model)], 1, floor=floor, extra=extra)), None)
        if locked is not None:
            return locked
    return None


def _preferred_head(session: Session, head, team, prefer: list[tuple[str, str]], avoid: dict[str, int]):
    """The run a worker's claim starts from, within the head's team and at the head's priority or
    above (affinity never jumps a team or a priority ahead of another):
    the oldest queued run of a model in `prefer` ((model, revision) pairs the worker holds loaded);
    else, when the head's model is in `avoid` ({model: how many other workers hold or run it}), the
    oldest run of a model no other worker has, or of one the fewest workers have when the head's
    model has more, so that workers spread over the models instead of all loading the oldest;
    else the head itself."""
    of_team = [] if team is None else [(Run.team_id, team)]

    def oldest(models):
        return _oldest_of(session, models, of_team, head.priority)

    if prefer:
        found = oldest(list(dict.fromkeys(prefer)))
        if found is not None:
            return found
    if avoid and head.model in avoid:
        found = oldest([(model, None) for model in _queued_models(session, of_team) if model not in avoid])
        if found is not None:
            return found
        for level in sorted({n for n in avoid.values() if n < avoid[head.model]})[:SPREAD_LEVELS]:
            found = oldest([(model, None) for model, n in avoid.items() if n == level])
            if found is not None:
                return found
    return head


def claim_runs(session: Session, *, worker: str, limit: int | Callable[[str, str], int] = settings.MAX_RUNS_PER_GROUP,
               lease_seconds: float = settings.LEASE_SECONDS,
               team_quota: int | None = None, prefer: list[tuple[str, str]] | None = None,
               avoid: dict[str, int] | None = None) -> list[ClaimedRun]:
    """Lease up to `limit` queued runs to `worker`, all of one (model, revision, eval) group.

    The group is that of the head of the queue (`_head_of_queue`: the highest priority, then the
    team with the fewest runs running, then age); within it runs go by priority then age. With
    `prefer` (the (model, revision) pairs the worker has loaded), a group of one of those models
    of the same team and priority goes first, and with `avoid` ({model: other workers holding it})
    a model nobody holds, or fewer workers hold, goes before the head's (`_preferred_head`). With
    `team_quota` a team never has more than that many runs running, and a group holds only its
    own team's runs. `limit` may be a function of the group's (model, revision), asked once the
    group is chosen (the scheduler sizes groups of short runs by their measured time). Each
    claimed run becomes `running` with attempts + 1 and a lease of `lease_seconds` that
    `heartbeat` renews; `requeue_expired` returns it to the queue if the lease runs out.
    """
    if not callable(limit) and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"claim_runs: limit must be an int >= 1 or a function giving one, got {limit!r}")
    if not lease_seconds or lease_seconds <= 0:
        raise ValueError(f"claim_runs: lease_seconds must be > 0, got {lease_seconds!r}")
    if team_quota is not None and (not isinstance(team_quota, int) or team_quota < 1):
        raise ValueError(f"claim_runs: team_quota must be an int >= 1 or None, got {team_quota!r}")
    found = _head_of_queue(session, team_quota)
    if found is None:
        return []
    head, team, room = found
    if prefer or avoid:
        head = _preferred_head(session, head, team, prefer or [], avoid or {})
    size = limit(head.model, head.revision) if callable(limit) else limit
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"claim_runs: limit gave {size!r} for {head.model}; it must give an int >= 1")
    group = [(Run.model, head.model), (Run.revision, head.revision), (Run.eval_hash, head.eval_hash)]
    of_team = [] if team_quota is None else [Run.team_id == team]
    ids = [row.id for row in _by_priority(session, group, size if room is None else min(size, room), extra=of_team)]
    now = now_value(session)
    claimed = session.execute(
        update(Run)
        .where(Run.id.in_(ids), Run.status == "queued")
        .values(
            status="running", attempts=Run.attempts + 1, lease_owner=worker, worker=worker,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds), started_at=None,  # mark_started sets it
        )
        .returning(Run.id, Run.sweep_id, Run.model, Run.revision, Run.config, Run.eval, Run.attempts, Run.priority)
    ).all()
    claimed.sort(key=lambda r: (-r.priority, r.id))
    return [ClaimedRun(r.id, r.sweep_id, r.model, r.revision, r.config, r.eval, r.attempts) for r in claimed]


def count_queued(session: Session, at_most: int | None = None) -> int:
    """How many runs wait in the queue, counted up to `at_most` when given: the scheduler asks every
    round only whether there is enough for every slot, and a count of a million queued runs read a
    million index entries each time."""
    queued = select(literal(1)).where(Run.status == "queued")
    if at_most is not None:
        queued = queued.limit(at_most)
    return session.scalar(select(func.count()).select_from(queued.subquery())) or 0


def heartbeat(session: Session, run_ids: list[int], *, worker: str, lease_seconds: float = settings.LEASE_SECONDS) -> list[int]:
    """Renew `worker`'s leases on `run_ids`; return the ids it still holds.

    A run that was cancelled, finished, or re-leased to another worker is not in the answer: the
    worker should stop before starting it.
    """
    if not run_ids:
        return []
    now = now_value(session)
    held = session.scalars(
        update(Run)
        .where(_among(session, run_ids), Run.status == "running", Run.lease_owner == worker)
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
        .returning(Run.id)
    ).all()
    return sorted(held)


def renew_leases(session: Session, run_ids: list[int], owners: list[str], *,
                 lease_seconds: float = settings.LEASE_SECONDS) -> int:
    """Renew, in one statement, the leases on those of `run_ids` that are running, held by one of
    `owners` (a scheduler's in-flight groups: one owner each) and have less than half a lease
    left; how many were renewed. A run cancelled, finished or re-leased to someone else is left
    alone, as `heartbeat` leaves it. A running group's worker renews its own runs every third of
    a lease, so this rewrites only the rows of groups whose worker has not started (or stopped
    renewing), not every in-flight row each time."""
    if not run_ids or not owners:
        return 0
    now = now_value(session)
    result = session.execute(
        update(Run)
        .where(_among(session, run_ids), Run.status == "running", _among(session, owners, Run.lease_owner),
               Run.lease_expires_at < now + dt.timedelta(seconds=lease_seconds / 2))
        .values(lease_expires_at=now + dt.timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def _ago(session: Session, seconds: float):
    """The lease clock's now, `seconds` ago (a worker that writes several runs in one transaction
    says how long ago each event happened; its own clock only measures the intervals)."""
    now = now_value(session)
    return now - dt.timedelta(seconds=seconds) if seconds > 0 else now


def mark_started(session: Session, run_id: int, *, worker: str, ago: float = 0.0) -> bool:
    """Record that `worker` started evaluating the run `ago` seconds ago (claims set one start for
    a whole group); False when the worker no longer holds it."""
    done = session.execute(
        update(Run).where(Run.id == run_id, Run.status == "running", Run.lease_owner == worker)
        .values(started_at=_ago(session, ago))
    )
    return done.rowcount == 1


def _seconds_since(session: Session, moment):
    """Seconds from `moment` (a column) to now, by the lease clock (`kbit.db.clock`)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", func.now() - moment)
    now = type_coerce(utcnow(), Run.started_at.type)
    return (func.julianday(now) - func.julianday(moment)) * 86400.0


def overdue_runs(session: Session, default_timeout_s: float) -> list[tuple[int, str, float]]:
    """(run id, lease owner, its limit in seconds) of every running run that started longer ago
    than its sweep's `run_timeout_s` (the spec's, else `default_timeout_s`): one query that
    returns only the overdue runs."""
    # Each sweep's limit is read from its spec once (a materialized CTE over the sweeps with running
    # runs), not once per run: a spec can be megabytes of JSON, parsed anew for every row that reads it.
    running = select(Run.id).where(Run.sweep_id == Sweep.id, Run.status == "running").exists()
    limit = func.coalesce(func.nullif(Sweep.spec["run_timeout_s"].as_float(), 0), float(default_timeout_s))
    limits = select(Sweep.id, limit.label("seconds")).where(running).cte("limits").prefix_with("MATERIALIZED")
    rows = session.execute(
        select(Run.id, Run.lease_owner, limits.c.seconds).join(limits, limits.c.id == Run.sweep_id)
        .where(Run.status == "running", Run.started_at.is_not(None),
               _seconds_since(session, Run.started_at) > limits.c.seconds)
        .order_by(Run.id)
    ).all()
    return [(run_id, owner, float(seconds)) for run_id, owner, seconds in rows]


def _among(session: Session, run_ids, column=Run.id):
    """`column` is one of the values, bound as one array (Postgres) or one JSON list (SQLite): the
    scheduler's 16,000 in-flight ids are one parameter, not an IN list of 16,000. Run ids by default;
    lease owners (strings) with column=Run.lease_owner."""
    strings = column is Run.lease_owner
    values = sorted({str(v) for v in run_ids}) if strings else [int(v) for v in run_ids]
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(values, ARRAY(String if strings else Integer)))
    listed = func.json_each(json.dumps(values)).table_valued("value")
    return column.in_(select(listed.c.value))


def holders(session: Session, run_ids: list[int]) -> dict[int, str]:
    """{run id: lease owner} of those of `run_ids` that are running (held by someone)."""
    if not run_ids:
        return {}
    rows = session.execute(select(Run.id, Run.lease_owner).where(_among(session, run_ids), Run.status == "running"))
    return {run_id: owner for run_id, owner in rows}


def leases_of(session: Session, owner_prefix: str) -> dict[int, str]:
    """{run id: lease owner} of the running runs whose lease owner starts with `owner_prefix`
    (a restarted scheduler finds the runs its earlier instances leased)."""
    escaped = owner_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = session.execute(
        select(Run.id, Run.lease_owner).where(Run.status == "running", Run.lease_owner.like(f"{escaped}%", escape="\\"))
    )
    return {run_id: owner for run_id, owner in rows}


def locked_run(session: Session, run_id: int):
    row = session.execute(
        select(Run.id, Run.status, Run.cache_key, Run.attempts, Run.max_attempts, Run.lease_owner, Run.error)
        .where(Run.id == run_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist; check the run id")
    return row


def fail_run(
    session: Session, run_id: int, *, error: str, worker: str, retryable: bool = True, error_type: str | None = None,
    charge: bool = True,
) -> str:
    """Record a failed attempt by the worker holding the run; return the run's new status.

    Retryable failures go back to the queue until attempts reach max_attempts, then the run is
    `failed` with this (the last) error. With charge=False the run goes back to the queue and the
    attempt does not count: it was stopped for another run's fault (its group's task was
    cancelled). A report from a worker that no longer holds the run changes nothing.
    """
    run = locked_run(session, run_id)
    if run.status != "running" or run.lease_owner != worker:
        return run.status
    again = (retryable and run.attempts < run.max_attempts) or not charge
    now = now_value(session)
    session.execute(
        update(Run).where(Run.id == run_id).values(
            status="queued" if again else "failed", error=error, error_type=error_type, lease_owner=None,
            lease_expires_at=None, finished_at=None if again else now,
            attempts=Run.attempts if charge else Run.attempts - 1,
        )
    )
    return "queued" if again else "failed"


def requeue_expired(session: Session, now: dt.datetime | None = None) -> list[int]:
    """Return runs whose lease ran out to the queue; return their ids.

    The attempt that lost its lease counts: a run already at max_attempts becomes `failed`, with
    the lease error and the previous attempt's error in its error text. One UPDATE over the
    expired leases (ix_runs_running_lease), however many there are.
    """
    now = now or now_value(session)
    expired = (
        select(Run.id).where(Run.status == "running", Run.lease_expires_at < now).with_for_update(skip_locked=True)
    )
    again = Run.attempts < Run.max_attempts
    lost = (
        literal("worker ") + func.coalesce(Run.lease_owner, "None") + " stopped renewing its lease during attempt "
        + cast(Run.attempts, String) + " of " + cast(Run.max_attempts, String) + " (it died or lost its connection)"
    )
    first_error = or_(again, Run.error.is_(None), Run.error == "")
    requeued = session.scalars(
        update(Run).where(Run.id.in_(expired), Run.status == "running")
        .values(
            status=case((again, "queued"), else_="failed"), error_type="lease_expired",
            error=case((first_error, lost), else_=lost + "; previous error: " + Run.error),
            lease_owner=None, lease_expires_at=None,
            finished_at=case((again, None), else_=type_coerce(now, Run.finished_at.type)),
        )
        .returning(Run.id)
    ).all()
    return sorted(requeued)


# -- results --------------------------------------------------------------------------------

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


def _score_rows(run_id: int, scores: list[dict]) -> list[dict]:
    """The document_scores rows of a result's `scores`, encoded (ValueError on a malformed entry)."""
    rows, seen = [], set()
    for entry in scores:
        if not isinstance(entry, dict) or not {"task", "metric", "doc_ids", "values"} <= set(entry):
            raise ValueError(f"complete_run: each score needs task, metric, doc_ids and values; got {str(entry)[:200]}")
        key = (str(entry["task"]), str(entry["metric"]))
        if key in seen:
            raise ValueError(f"complete_run: scores name {key[0]}/{key[1]} twice")
        seen.add(key)
        encoded = encode_scores(entry["doc_ids"], entry["values"], entry.get("weights"))
        rows.append({"run_id": run_id, "task": key[0], "metric": key[1], **encoded})
    return rows


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
        if bits is not None and not set(settings.BIT_FIELDS) <= set(bits):
            raise ValueError(f"complete_run: bits needs {', '.join(settings.BIT_FIELDS)}; got {bits}")


@dataclass(frozen=True)
class Finished:
    """One run's RunResult.to_dict(), finished `ago` seconds ago (and started `started_ago`
    seconds ago, when its start was not written yet)."""

    run_id: int
    result: dict
    ago: float = 0.0
    started_ago: float | None = None


def complete_run(session: Session, run_id: int, result: dict, *, worker: str, ago: float = 0.0,
                 started_ago: float | None = None) -> bool:
    """Store one run's result (`complete_runs` of one); return True when this call stored it."""
    return complete_runs(session, [Finished(run_id, result, ago, started_ago)], worker=worker)[0]


def complete_runs(session: Session, finished: list[Finished], *, worker: str) -> list[bool]:
    """Store finished runs' results; return, for each, whether this call stored it.

    Compare-and-set, in one transaction with the runs' rows locked: only the worker that holds a
    run's lease, while the run is `running`, stores its result. A cancelled or failed run stays so;
    a run re-leased to another worker after its lease ran out takes that worker's result, not a
    late one; a second report of a done run is ignored. If another run with the same cache key
    finished first, this one becomes `cached` pointing at it. A `failed` result marks the run
    failed for good (its error is kept). A run's metrics, bit report, document scores and samples
    are written together or not at all.

    Set-based: one locking SELECT, one UPDATE per kind of outcome (two when only some starts go
    with their results) and one INSERT per table for the whole batch, so a worker's batch of short
    runs costs a few statements, not a few per run.
    """
    for item in finished:
        _check_result(item.result)
    scores = {x.run_id: _score_rows(x.run_id, x.result.get("scores") or []) for x in finished
              if x.result["status"] == "done"}
    rows = locked_runs(session, [x.run_id for x in finished])
    held = [x for x in finished if rows[x.run_id].status == "running" and rows[x.run_id].lease_owner == worker]
    if not held:
        return [False] * len(finished)
    now = db_now(session)
    failed = [x for x in held if x.result["status"] == "failed"]
    if failed:
        session.execute(update(Run), _same_keys_together([
            {"id": x.run_id, "status": "failed", "error_type": x.result.get("error_type"),
             "error": x.result.get("error") or "failed", **_finish_values(x, now, worker)}
            for x in failed
        ]))
    stored = {x.run_id for x in failed}
    stored |= _store_done(session, [x for x in held if x.result["status"] == "done"], rows, scores, now, worker)
    return [x.run_id in stored for x in finished]


def locked_runs(session: Session, run_ids: list[int]) -> dict:
    """The runs' queue fields by id, their rows locked (in id order, so two batches never deadlock)."""
    found = {
        row.id: row for row in session.execute(
            select(Run.id, Run.status, Run.cache_key, Run.lease_owner)
            .where(Run.id.in_(sorted(set(run_ids)))).order_by(Run.id).with_for_update()
        )
    }
    missing = sorted(set(run_ids) - set(found))
    if missing:
        raise NotFound(f"run {missing[0]} does not exist; check the run id")
    return found


def _finish_values(item: Finished, now: dt.datetime, worker: str) -> dict:
    result = item.result
    return {
        "lease_owner": None, "lease_expires_at": None, "worker": worker,
        "finished_at": now - dt.timedelta(seconds=max(item.ago, 0.0)),
        **({} if item.started_ago is None else {"started_at": now - dt.timedelta(seconds=max(item.started_ago, 0.0))}),
        "device": result.get("device"), "wall_time_s": result.get("wall_time_s"),
        "peak_memory_bytes": result.get("peak_memory_bytes"), "provenance": result.get("provenance"),
    }


def _same_keys_together(rows: list[dict]) -> list[dict]:
    """Rows of a bulk UPDATE ordered so those setting the same columns are adjacent: SQLAlchemy sends
    one executemany per run of equal key sets (runs whose start was written, and those whose start
    goes with their result, alternate in a worker's batch)."""
    return sorted(rows, key=lambda row: sorted(row))


def _store_done(session: Session, done: list[Finished], rows: dict, scores: dict, now, worker: str) -> set[int]:
    """Mark `done` runs done with their metrics, bits, scores and samples, all in one savepoint;
    return the ids stored. When a cache key was finished first by another run (the partial unique
    index on done cache keys), the batch is written again run by run, and that run becomes `cached`."""
    if not done:
        return set()
    try:
        with session.begin_nested():
            session.execute(update(Run), _same_keys_together([
                {"id": x.run_id, "status": "done", "error_type": None, "error": None, **_finish_values(x, now, worker)}
                for x in done
            ]))
            metric_rows = [row for x in done for row in _metric_rows(x.run_id, x.result.get("metrics") or [])]
            if metric_rows:
                session.execute(insert(Result), metric_rows)
            bit_rows = [
                {"run_id": x.run_id, "n_params": int(b["n_params"]), "n_quantized": int(b["n_quantized"]),
                 "bits_per_param": float(b["bits_per_param"]), "total_bits": float(b["total_bits"])}
                for x in done if (b := x.result.get("bits"))
            ]
            if bit_rows:
                session.execute(insert(RunBits), bit_rows)
            score_rows = [row for x in done for row in scores[x.run_id]]
            if score_rows:
                session.execute(insert(DocumentScore), score_rows)
            sample_rows = [
                {"run_id": x.run_id, "task": str(s.get("task", "")), "doc_id": s.get("doc_id"), "data": s}
                for x in done for s in x.result.get("samples") or []
            ]
            if sample_rows:
                session.execute(insert(Sample), sample_rows)
    except IntegrityError:
        if len(done) > 1:
            return set().union(*(_store_done(session, [x], rows, scores, now, worker) for x in done))
        item = done[0]
        source = session.scalar(select(Run.id).where(Run.cache_key == rows[item.run_id].cache_key, Run.status == "done"))
        if source is None:
            raise
        session.execute(update(Run), [
            {"id": item.run_id, "status": "cached", "cached_from_id": source, **_finish_values(item, now, worker)}
        ])
        return set()
    return {x.run_id for x in done}


# -- sweeps ---------------------------------------------------------------------------------



def _sweep_with_team(session: Session, sweep_id: int):
    row = session.execute(
        select(Sweep.id, Sweep.status, Team.name.label("team")).join(Team).where(Sweep.id == sweep_id)
    ).first()
    if row is None:
        raise NotFound(f"sweep {sweep_id} does not exist; `kbit status` lists the sweeps")
    return row


def cancel_sweep(session: Session, sweep_id: int, *, team: str) -> dict:
    """Cancel a sweep of `team`: queued runs are cancelled, running ones drop out of their worker's
    heartbeat so it stops before the next config. Returns the sweep's progress afterwards.

    PermissionDenied when the sweep belongs to another team; NotFound when there is no such sweep.
    """
    sweep = _sweep_with_team(session, sweep_id)
    if sweep.team != team:
        raise PermissionDenied(
            f"sweep {sweep_id} belongs to team {sweep.team!r}, not {team!r}; only its own team can cancel it"
        )
    now = now_value(session)
    session.execute(
        update(Run)
        .where(Run.sweep_id == sweep_id, Run.status.in_(IN_FLIGHT_STATES))
        .values(status="cancelled", lease_owner=None, lease_expires_at=None, finished_at=now)
    )
    if sweep.status != "cancelled":
        session.execute(update(Sweep).where(Sweep.id == sweep_id).values(status="cancelled", cancelled_at=now))
    return sweep_progress(session, sweep_id)


def sweep_progress(session: Session, sweep_id: int) -> dict:
    """Run counts by status, the total, and eta_s (remaining runs at this sweep's pace so far;
    None before the first run finishes, 0.0 when nothing is left)."""
    _sweep_with_team(session, sweep_id)
    counts = dict.fromkeys(RUN_STATES, 0)
    for status, n in session.execute(
        select(Run.status, func.count()).where(Run.sweep_id == sweep_id).group_by(Run.status)
    ):
        counts[status] = n
    counts["total"] = sum(counts[s] for s in RUN_STATES)
    remaining = counts["queued"] + counts["running"]
    eta = 0.0 if remaining == 0 else None
    if remaining and counts["done"]:
        first, last = session.execute(
            # a run stored by a caller that never marked its start counts from its enqueueing
            select(func.min(func.coalesce(Run.started_at, Run.created_at)), func.max(Run.finished_at)).where(
                Run.sweep_id == sweep_id, Run.status == "done"
            )
        ).one()
        if first and last and last > first:
            eta = remaining * (last - first).total_seconds() / counts["done"]
    counts["eta_s"] = eta
    return counts
