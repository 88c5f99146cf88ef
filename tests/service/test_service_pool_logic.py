"""The scheduler's side of long-lived workers, without Ray: an idle worker gets a group of the model
it holds, a restarted scheduler adopts its workers' groups and requeues what nobody started at no
attempt's cost, a lost node charges nothing, and a group's memory need picks its GPU share."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from kbit.cluster.pool import gpu_share
from kbit.db import queue, session_scope
from kbit.service.grouprun import noop_evaluate, run_group
from kbit.service.scheduler import Scheduler, Slot
from tests.support.scheduling import WorkerCrashedError, drain, make_sweep, runs_of, submit

GIB = 2**30


class FakePool:
    """A launcher with long-lived workers' extras: idle slots holding models, groups to adopt, and
    a node that can be lost."""

    def __init__(self, url, slots=(), adopt=(), lost=False, crash=False):
        self.url, self.slots, self.adoptable, self.node_lost, self.crash = url, list(slots), list(adopt), lost, crash
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.launched = []  # (worker, slot, need, models)
        self.futures = []

    def capacity(self):
        return 2

    def free_slots(self):
        """The slots given (once), or with None, a new worker for every slot not busy."""
        if self.slots is None:
            return [Slot() for _ in range(2 - sum(not f.done() for f in self.futures))]
        slots, self.slots = self.slots, []
        return slots

    def launch(self, worker, runs, slot=None, need_bytes=None):
        self.launched.append((worker, slot, need_bytes, {r["model"] for r in runs}))
        if self.crash:
            def evaluate(*args, **kw):
                raise WorkerCrashedError("the node went away")
                yield
        else:
            evaluate = noop_evaluate
        self.futures.append(self.pool.submit(run_group, self.url, worker, runs, evaluate, 30.0))
        return self.futures[-1]

    def wait(self, handles, timeout):
        done, _ = wait(handles, timeout=timeout)
        return [(f, None if f.exception() else f.result(), f.exception()) for f in done]

    def cancel(self, handle):
        pass

    def adopt(self):
        return self.adoptable

    def lost(self, handle, error):
        return self.node_lost


def test_an_idle_worker_gets_a_group_of_the_model_it_holds(db):
    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a", "m/b")))  # m/a's runs are older
    holder = Slot(worker="w-holding-b", holds=[("m/b", "main")])
    pool = FakePool(url, slots=[holder, Slot()])
    Scheduler(engine, pool, lease_seconds=30).fill()
    (_, first_slot, _, first_models), (_, second_slot, _, second_models) = pool.launched
    assert first_slot is holder and first_models == {"m/b"}
    assert second_slot.worker is None and second_models == {"m/a"}  # a new worker takes the head of the queue


def test_idle_workers_spread_over_the_models_instead_of_all_loading_the_oldest(db):
    engine, url, *_ = db
    submit(db, make_sweep(models=("m/a", "m/b", "m/c", "m/d"), bits=(2, 3, 4, 5, 6, 7, 8)))  # 4 x 15 runs
    # Eight idle workers, each holding a model of an earlier sweep (no runs left: it must not count).
    slots = [Slot(worker=f"w{i}", holds=[(f"old/{i}", "main")]) for i in range(8)]
    pool = FakePool(url, slots=slots)
    scheduler = Scheduler(engine, pool, lease_seconds=30, max_runs_per_group=4)
    scheduler.fill()
    assert sorted(next(iter(models)) for *_, models in pool.launched) == ["m/a", "m/a", "m/b", "m/b", "m/c", "m/c",
                                                                           "m/d", "m/d"]


def test_a_restarted_scheduler_adopts_running_groups_and_requeues_unstarted_ones_uncharged(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a", "m/b", "m/c")))  # 3 groups of 5
    with session_scope(engine) as s:
        running = queue.claim_runs(s, worker="kbit-x-0000aaaa/t1", limit=16)  # a worker still runs these
        unstarted = queue.claim_runs(s, worker="kbit-x-0000aaaa/t2", limit=16)  # claimed, never started
        other = queue.claim_runs(s, worker="kbit-x-y-0000bbbb/t1", limit=16)  # another scheduler's
    handle = object()
    pool = FakePool(url, adopt=[(handle, "kbit-x-0000aaaa/t1", [r.run_id for r in running], "m/a")])
    scheduler = Scheduler(engine, pool, name="kbit-x", lease_seconds=30)
    scheduler.adopt()
    assert scheduler.inflight[handle].run_ids == [r.run_id for r in running]
    rows = {r["run_id"]: r for r in runs_of(engine, reply["sweep_id"])}
    assert all(rows[r.run_id]["status"] == "running" for r in running + other)
    assert all((rows[r.run_id]["status"], rows[r.run_id]["attempts"]) == ("queued", 0) for r in unstarted)
    assert scheduler.stats["runs_released_on_restart"] == len(unstarted) == 5
    assert scheduler.stats["groups_adopted"] == 1


def test_a_group_lost_with_its_node_goes_back_to_the_queue_uncharged(db):
    engine, url, *_ = db
    reply = submit(db, make_sweep(models=("m/a",), bits=(4,), dtypes=("nf",)))
    pool = FakePool(url, slots=[Slot(), Slot()], lost=True, crash=True)
    scheduler = Scheduler(engine, pool, lease_seconds=30)
    scheduler.tick()
    while scheduler.inflight:
        scheduler.harvest(wait_s=5)
    rows = runs_of(engine, reply["sweep_id"])
    assert {(r["status"], r["attempts"], r["error_type"]) for r in rows} == {("queued", 0, "node_lost")}
    assert scheduler.stats["runs_lost_with_node"] == 2
    pool.node_lost, pool.crash, pool.slots = False, False, None
    drain(scheduler)
    assert {(r["status"], r["attempts"]) for r in runs_of(engine, reply["sweep_id"])} == {("done", 1)}


def test_the_memory_need_is_the_larger_of_declared_and_measured(db):
    engine, url, *_ = db
    text_models = ("{model: m/a, memory_gb: 10}", "m/b")
    reply = submit(db, make_sweep(models=text_models, bits=(4,), dtypes=("nf",)))
    with session_scope(engine) as s:
        a = queue.claim_runs(s, worker="w", limit=16)
        b = queue.claim_runs(s, worker="w", limit=16)
    scheduler = Scheduler(engine, FakePool(url), lease_seconds=30)
    assert scheduler.memory_need(a) == 10 * GIB and scheduler.memory_need(b) is None
    with session_scope(engine) as s:  # a's first run measured 20 GiB on a GPU
        queue.complete_run(s, a[0].run_id, {"config": a[0].config, "status": "done", "metrics": [],
                                             "device": "NVIDIA H100", "peak_memory_bytes": 20 * GIB}, worker="w")
    scheduler._learned.clear()
    assert scheduler.memory_need(a[1:]) == int(20 * GIB * 1.2)
    assert reply["total"] == 4


@pytest.mark.parametrize(("need_gib", "share"), [
    (None, 1.0), (1, 0.125), (10, 0.125), (10.1, 0.25), (20, 0.25), (39, 0.5), (40, 0.5), (41, 1.0), (80, 1.0),
    (81, 2.0), (150, 2.0), (161, 3.0),
])
def test_a_need_picks_the_smallest_gpu_share_that_holds_it(need_gib, share):
    need = None if need_gib is None else int(need_gib * GIB)
    assert gpu_share(need, 80 * GIB) == share


def test_with_nothing_measured_or_declared_the_need_is_estimated_from_the_checkpoint(db, tmp_path):
    import json

    engine, url, *_ = db
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"torch_dtype": "float16", "vocab_size": 1000,
                                                     "max_position_embeddings": 512}))
    with open(folder / "model.safetensors", "wb") as f:
        f.truncate(4 * GIB)  # sparse: only its size matters
    folder = str(folder)
    submit(db, make_sweep(models=(folder,), bits=(4,), dtypes=("nf",)))
    with session_scope(engine) as s:
        group = queue.claim_runs(s, worker="w", limit=16)
    need = Scheduler(engine, FakePool(url), lease_seconds=30).memory_need(group)
    assert need == int(4 * GIB * (1 + 4 / 16) * 1.1 + 8 * 512 * 1000 * 10)  # the group's largest k: 4
    assert gpu_share(need, 80 * GIB) == 0.125
