"""A long-lived worker's loaded models (kbit.workers.modelcache): least recently used out, within
a budget; and through the real evaluator, a group of a model the worker holds loads nothing and
scores exactly as a fresh load does."""

from __future__ import annotations

import pytest

from kbit.workers import loading
from kbit.workers.modelcache import ModelCache


def loader(name, log):
    def load():
        log.append(name)
        return {"name": name}
    return load


def use(cache, name, size, log, expected=0):
    with cache.use(name, loader(name, log), lambda m: size, expected_bytes=expected) as model:
        assert model["name"] == name
        return list(cache.held())  # while in use


def test_a_held_model_is_not_loaded_again_and_the_least_recent_goes_first():
    log, evicted = [], []
    cache = ModelCache(250, on_evict=lambda m: evicted.append(m["name"]))
    use(cache, "a", 100, log)
    use(cache, "b", 100, log)
    use(cache, "a", 100, log)  # a hit: a is now the most recent
    assert log == ["a", "b"] and cache.stats == {"loads": 2, "hits": 1, "evictions": 0}
    use(cache, "c", 100, log)  # 300 > 250: b (least recent) goes
    assert evicted == ["b"] and cache.held() == ["a", "c"] and cache.held_bytes() == 200


def test_a_model_bigger_than_the_budget_is_used_then_dropped():
    log, evicted = [], []
    cache = ModelCache(50, on_evict=lambda m: evicted.append(m["name"]))
    use(cache, "small", 40, log)
    assert use(cache, "big", 500, log) == ["small"]  # in use: not in the cache's list, small still held
    assert cache.held() == [] and evicted == ["small", "big"]


def test_the_model_in_use_is_never_evicted_by_its_own_insertion():
    cache = ModelCache(100)
    log = []
    with cache.use("a", loader("a", log), lambda m: 60):
        with cache.use("b", loader("b", log), lambda m: 60):
            pass  # b goes back: 60 <= 100, nothing else held yet
        assert cache.held() == ["b"]
    assert cache.held() == ["a"]  # a came back last; a + b = 120 > 100, so b (older) went


def test_expected_bytes_make_room_before_a_load():
    log, evicted = [], []
    cache = ModelCache(100, on_evict=lambda m: evicted.append(m["name"]))
    use(cache, "a", 50, log)
    use(cache, "b", 50, log)
    use(cache, "c", 10, log, expected=60)  # room for 60 first: a goes before c loads
    assert evicted[0] == "a" and log == ["a", "b", "c"]


def test_a_failed_load_leaves_nothing_behind():
    cache = ModelCache(100)

    def broken():
        raise OSError("no such model")

    with pytest.raises(OSError):
        with cache.use("x", broken, lambda m: 1):
            pass
    assert cache.held() == [] and cache.stats["loads"] == 0


def test_a_negative_budget_is_refused():
    with pytest.raises(ValueError, match="budget_bytes must be >= 0"):
        ModelCache(-1)


def test_two_groups_of_a_held_model_load_it_once_and_score_as_a_fresh_load(micro):
    from kbit.workers.run import evaluate_group, new_model_cache

    model = "kbit/micro/m1"
    configs = [{"bits": 4, "dtype": "nf", "blocksize": 64}, {"bits": 16}]
    spec = {"tasks": ["kbit_lastword"], "limit": 30, "batch_size": 16}
    fresh = list(evaluate_group(model, "main", configs, spec, lambda: False))
    cache = new_model_cache(2**30)
    before = loading.MODEL_LOADS[model]
    first = list(evaluate_group(model, "main", configs, spec, lambda: False, cache=cache))
    second = list(evaluate_group(model, "main", configs[::-1], spec, lambda: False, cache=cache))
    assert loading.MODEL_LOADS[model] - before == 1 and cache.stats["hits"] == 1
    assert [k.model for k in cache.held()] == [model]

    def scores(results):
        return {r["config"].get("bits"): [(m["task"], m["metric"], m["value"]) for m in r["metrics"]] for r in results}

    assert scores(first) == scores(fresh) == scores(second)  # weights restored after every config
    assert all(r["status"] == "done" for r in first + second)
