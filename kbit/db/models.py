"""SQLAlchemy 2.0 typed models: teams, sweeps, runs, results, bit reports, document scores and samples.

The schema itself is made only by the Alembic migrations in `kbit/db/migrations/`; these models
must agree with them (tests/db/test_db_migrations.py compares the two). Configs, eval specs and
provenance are plain JSON; the config fields the dashboard filters on are copied into columns.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from kbit import settings
from kbit.settings import RUN_STATES, SWEEP_STATES


def _one_of(states) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in states) + ")"


# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


def _queue_index(name: str, status: str, *columns: str) -> Index:
    """An index over the runs in one state only (Postgres and SQLite partial indexes)."""
    where = text(f"status = '{status}'")
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict: JSON, list: JSON}


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    # The highest priority the team may submit at; only an operator (with the database) raises it.
    max_priority: Mapped[int] = mapped_column(default=0, server_default=text("0"))


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = (
        # Submitting the same sweep twice is a no-op while it is active; after a cancel it runs anew.
        Index(
            "uq_sweeps_active_spec",
            "team_id",
            "name",
            "spec_hash",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        CheckConstraint(_one_of(SWEEP_STATES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict]
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    priority: Mapped[int] = mapped_column(default=0)
    submitter: Mapped[str | None] = mapped_column(String(200))
    code_version: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]
    cancelled_at: Mapped[dt.datetime | None]

    team: Mapped[Team] = relationship()


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(
            _one_of(RUN_STATES), name="status"
        ),
        # The queue's indexes hold queued or running runs only (partial), so a claim's cost follows
        # what is in flight, not the finished runs the table keeps. A claim finds each team's
        # oldest queued run per priority (ix_runs_queued_team); a worker's affinity, the oldest
        # run of a model in the team (ix_runs_queued_model); then the rest of its (model,
        # revision, eval) group (ix_runs_queued_group). No index leads with priority: Postgres
        # would walk it in claim order filtering for the team or model (see kbit/db/queue.py).
        _queue_index("ix_runs_queued_team", "queued", "team_id", "priority", "id"),
        _queue_index("ix_runs_queued_model", "queued", "team_id", "model", "priority", "id"),
        _queue_index("ix_runs_queued_group", "queued", "model", "revision", "eval_hash", "priority", "id"),
        # Leases that ran out, and how many runs each team has running (its fair share and quota).
        _queue_index("ix_runs_running_lease", "running", "lease_expires_at"),
        _queue_index("ix_runs_running_team", "running", "team_id"),
        # The dashboard's filters (and their fingerprints: counts and sums of ids) from the index
        # alone; SQLite's indexes hold the row id anyway, Postgres' are told to (migration 0008).
        Index("ix_runs_sweep_status", "sweep_id", "status", postgresql_include=["id"]),
        # A finished result is stored once per cache key; other runs with that key point at it.
        Index(
            "uq_runs_cache_key_done",
            "cache_key",
            unique=True,
            sqlite_where=text("status = 'done'"),
            postgresql_where=text("status = 'done'"),
        ),
        Index("ix_runs_cache_key", "cache_key"),
        # The dashboard's family filter, and every filter's choices in one pass over the index alone.
        Index("ix_runs_frontier", "status", "family", "dtype", "bits", "blocksize", "method",
              postgresql_include=["id"]),
        # The dashboard's team filter, on the runs' own team (no join through sweeps).
        Index("ix_runs_team_status", "team_id", "status", postgresql_include=["id"]),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id"))
    # The sweep's team, copied: the claim's fairness is per team, found by index without a join.
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"))
    model: Mapped[str] = mapped_column(String(300))
    revision: Mapped[str] = mapped_column(String(100))
    family: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict]
    # Copies of config fields, for the dashboard's filters.
    bits: Mapped[int]
    dtype: Mapped[str] = mapped_column(String(16))
    blocksize: Mapped[int | None]
    exponent_bits: Mapped[int | None]
    outlier_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    method: Mapped[str] = mapped_column(String(16), default="rtn", server_default=text("'rtn'"))
    label: Mapped[str] = mapped_column(String(64))
    eval: Mapped[dict]
    eval_hash: Mapped[str] = mapped_column(String(64))
    cache_key: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=settings.MAX_ATTEMPTS)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None]
    worker: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    wall_time_s: Mapped[float | None]
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error_type: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    provenance: Mapped[dict | None]
    cached_from_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))

    sweep: Mapped[Sweep] = relationship()


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("run_id", "task", "metric", name="uq_results_run_task_metric"),
        Index("ix_results_task_metric", "task", "metric", "run_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float]
    stderr: Mapped[float | None]


class RunBits(Base):
    """What a run stores of its model's bit accounting (settings.BIT_FIELDS; kbit.kernels.BitReport computes it)."""

    __tablename__ = "bit_reports"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    n_params: Mapped[int] = mapped_column(BigInteger)
    n_quantized: Mapped[int] = mapped_column(BigInteger)
    bits_per_param: Mapped[float]
    total_bits: Mapped[float]


class DocumentScore(Base):
    """One (task, metric) of a finished run, one score per document (encoding: kbit/db/scorecodec.py)."""

    __tablename__ = "document_scores"
    __table_args__ = (UniqueConstraint("run_id", "task", "metric", name="uq_document_scores_run_task_metric"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    n_docs: Mapped[int]
    doc_ids: Mapped[bytes] = mapped_column(LargeBinary)
    values: Mapped[bytes] = mapped_column(LargeBinary)
    weights: Mapped[bytes | None] = mapped_column(LargeBinary)


class AnalysisCache(Base):
    """A derived answer the dashboard computed (kbit/dashboard/stored.py), kept under a digest of
    everything it was computed from (the runs' fingerprint, the metric, the view, the analysis'
    version): a new finished run changes the digest, so a row is never stale, only unused."""

    __tablename__ = "analysis_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # What was asked (kind and parameters, not the runs): a view's new answer replaces its old ones.
    view: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)


class Sample(Base):
    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_run_task", "run_id", "task"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(200))
    doc_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict]
