"""The durable job queue, as the cluster calls it: `queue.enqueue_sweep`, `queue.claim_runs`, ...

Plain functions on an injected Session; the caller's `session_scope` decides when a transaction
commits. Each operation lives in the module named after its job; this module gathers them.
"""

from kbit.db.completion import complete_run
from kbit.db.enqueue import enqueue_sweep
from kbit.db.leases import ClaimedRun, claim_runs, fail_run, heartbeat, requeue_expired
from kbit.db.models import RUN_STATES as STATES
from kbit.db.sweeps import cancel_sweep, sweep_progress

__all__ = [
    "ClaimedRun", "STATES", "enqueue_sweep", "claim_runs", "heartbeat", "complete_run", "fail_run",
    "requeue_expired", "cancel_sweep", "sweep_progress",
]
