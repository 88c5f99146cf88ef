"""Views <-> URL query parameters."""

from kbit.dashboard import urlstate


def test_decode_types_and_lists():
    view, problems = urlstate.decode({
        "page": "frontier", "metric": "kbit_heldout/perplexity", "dtype": "nf,fp", "k": "3, 4", "block": "b64,per-tensor",
        "sweep": "12", "run": "7", "facet": "dtype,block", "unknown": "x",
    })
    assert problems == ["?unknown is not a link parameter (see docs/dashboard.md); ignored"]
    assert view == {"page": "frontier", "metric": "kbit_heldout/perplexity", "dtype": ["nf", "fp"], "k": [3, 4],
                    "block": ["b64", "per-tensor"], "sweep": [12], "run": 7, "facet": ["dtype", "block"]}


def test_encode_is_the_inverse_and_drops_empties():
    view = {"page": "compare", "group": "sweep", "items": ["3", "5"], "a": 3, "b": 5, "team": [], "metric": None}
    params = urlstate.encode(view)
    assert params == {"page": "compare", "group": "sweep", "items": "3,5", "a": "3", "b": "5"}
    assert urlstate.decode(params) == ({k: v for k, v in view.items() if v not in ([], None)}, [])


def test_bad_values_are_dropped_with_a_message():
    view, problems = urlstate.decode({"page": "nope", "k": "four", "facet": "dtype,colour", "run": "12"})
    assert view == {"facet": ["dtype"], "run": 12}
    assert len(problems) == 3
    assert any("?k=four is not a whole number" in p for p in problems)
    assert any("nope is not one of frontier, scaling, queue, compare, run" in p for p in problems)
    assert any("colour is not one of family, dtype, block" in p for p in problems)


def test_repeated_keys_take_the_last_value():
    view, _ = urlstate.decode({"page": ["queue", "run"]})
    assert view == {"page": "run"}


def test_parameters_the_page_does_not_read_are_named():
    params = {"page": "scaling", "k": "3,4", "metric": "x/acc", "at": "4"}
    assert urlstate.unused(params, {"metric", "at", "by"}) == ["?k=3,4 is not used on the scaling page; ignored"]
