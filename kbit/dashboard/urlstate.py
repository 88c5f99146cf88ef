"""A dashboard view <-> URL query parameters, so every view can be shared as a link.

Pure functions: `decode(params)` turns `st.query_params.to_dict()` into typed values (with a list
of problems for values it had to drop), `encode(view)` is its inverse. Lists are comma-separated
(`?page=frontier&dtype=nf,fp&k=3,4&block=b64&method=gptq`).
"""

from __future__ import annotations

PAGES = ("frontier", "scaling", "queue", "compare", "run")
FACETS = ("family", "dtype", "block", "method")
# The metric a page opens on: the first of these the database has. Held-out bits per byte is the
# headline of README's picture and docs/RESULTS.md (on the small bundled family it is the sharper
# signal); sweeps of real models on the paper's tasks have no kbit_heldout and open on accuracy.
DEFAULT_METRICS = ("kbit_heldout/bits_per_byte", "mean_zero_shot/acc")


def default_metric(metrics: list[str]) -> str | None:
    """The metric a page shows unless asked for another: the first of DEFAULT_METRICS the database
    has, else its first metric."""
    return next((m for m in DEFAULT_METRICS if m in metrics), metrics[0] if metrics else None)


# key -> kind: "str" | "int" | "strs" | "ints"
KEYS = {
    "page": "str", "metric": "str", "team": "strs", "sweep": "ints", "family": "strs", "dtype": "strs",
    "block": "strs", "method": "strs", "k": "ints", "facet": "strs", "by": "str", "at": "int", "group": "str", "items": "strs",
    "a": "int", "b": "int", "config": "str", "run": "int",
}
CHOICES = {"page": PAGES, "facet": FACETS, "by": ("dtype", "block"), "group": ("team", "sweep")}


def _as_int(text: str) -> int:
    return int(text.strip())


def decode(params: dict) -> tuple[dict, list[str]]:
    """Typed view values from query parameters, and one line per value that was not understood."""
    view, problems = {}, []
    for key, raw in params.items():
        kind = KEYS.get(key)
        if kind is None:
            problems.append(f"?{key} is not a link parameter (see docs/dashboard.md); ignored")
            continue
        text = raw[-1] if isinstance(raw, list) else str(raw)
        parts = [p.strip() for p in text.split(",") if p.strip()] if kind in ("strs", "ints") else [text.strip()]
        try:
            values = [_as_int(p) for p in parts] if kind in ("int", "ints") else parts
        except ValueError:
            problems.append(f"?{key}={text} is not a whole number (or comma-separated numbers); ignored")
            continue
        if key in CHOICES:
            bad = [v for v in values if v not in CHOICES[key]]
            if bad:
                problems.append(f"?{key}={text}: {', '.join(map(str, bad))} is not one of {', '.join(CHOICES[key])}; ignored")
                values = [v for v in values if v in CHOICES[key]]
        if not values:
            continue
        view[key] = values if kind in ("strs", "ints") else values[0]
    return view, problems


def unused(params: dict, used: set) -> list[str]:
    """One line per known parameter of the link that the page shown does not read."""
    page = params.get("page", "frontier")
    page = page[-1] if isinstance(page, list) else page
    return [f"?{key}={params[key] if not isinstance(params[key], list) else params[key][-1]} is not used on the "
            f"{page} page; ignored" for key in params if key in KEYS and key != "page" and key not in used]


def encode(view: dict) -> dict[str, str]:
    """Query parameters for a view: empty and None values left out, lists comma-separated."""
    params = {}
    for key, value in view.items():
        if key not in KEYS or value is None or value == [] or value == ():
            continue
        params[key] = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
    return params
