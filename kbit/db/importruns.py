"""`kbit results import`, the writing half: checked runs (kbit.sweeps.resultsfile) into a new sweep
of a team, in one transaction, all or nothing.

The runs become `done` runs of the sweep with their metrics and bit report. An imported run has
no per-document scores, so the analysis resamples it from its stderr. Importing one file twice
under one name is refused (that sweep exists); under another name it is a second copy.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kbit.db.clock import db_now
from kbit.db.models import Result, Run, RunBits, Sweep
from kbit.db.newruns import canonical_json, sha256_hex
from kbit.db.teams import get_team
from kbit.errors import Conflict


def import_runs(session: Session, team: str, name: str, runs: list[dict], file_hash: str, source: str = "") -> int:
    """Write checked runs as a new sweep of `team`; return its id. `file_hash` identifies the file."""
    team_row = get_team(session, team)
    spec = {"name": name, "team": team, "imported_from": source, "n_runs": len(runs)}
    spec_hash = sha256_hex(f"{file_hash}:{name}")
    now = db_now(session)
    try:
        with session.begin_nested():
            sweep_id = session.execute(insert(Sweep).values(
                team_id=team_row.id, name=name, spec=spec, spec_hash=spec_hash, status="active", priority=0,
                submitter="kbit results import", code_version=None, created_at=now,
            ).returning(Sweep.id)).scalar_one()
    except IntegrityError:
        raise Conflict(f"team {team} already imported this file as sweep {name!r}; give another --name to "
                       "import a second copy") from None
    for index, run in enumerate(runs):
        config = run["config"]
        run_id = session.execute(insert(Run).values(
            sweep_id=sweep_id, team_id=team_row.id, model=run["model"], revision=run["revision"], family=run["family"],
            config=config, bits=config["bits"], dtype=config["dtype"], blocksize=config["blocksize"],
            exponent_bits=config["exponent_bits"], outlier_fraction=config["outlier_fraction"],
            method=config.get("method", "rtn"), label=run["label"],
            eval=run["eval"], eval_hash=sha256_hex(canonical_json(run["eval"])),
            cache_key=f"import:{sweep_id}:{index}", status="done", priority=0, attempts=0, max_attempts=1,
            created_at=run["created_at"] or now, started_at=run["started_at"], finished_at=run["finished_at"] or now,
            wall_time_s=run["wall_time_s"], peak_memory_bytes=run["peak_memory_bytes"], device=run["device"],
            provenance={"imported_from": source, "original_run_id": run["original_run_id"]},
        ).returning(Run.id)).scalar_one()
        if run["bits"]:
            session.execute(insert(RunBits).values(run_id=run_id, **run["bits"]))
        session.execute(insert(Result), [{"run_id": run_id, **m} for m in run["metrics"]])
    return sweep_id
