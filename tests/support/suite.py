"""How `make test` splits the suite (scripts/test.sh): the tests that start Ray or cut Postgres run
from tests/cluster/ only, in a process of their own beside the others, so one marked so elsewhere
would run in neither; `misplaced_cluster_tests` finds them at collection."""

from __future__ import annotations

CLUSTER_FOLDER = "tests/cluster/"
CLUSTER_MARKERS = ("ray", "outage")


def is_cluster_test(item) -> bool:
    return any(item.get_closest_marker(name) for name in CLUSTER_MARKERS)


def misplaced_cluster_tests(items) -> list[str]:
    """The node ids of tests marked ray or outage outside tests/cluster/."""
    return [item.nodeid for item in items if is_cluster_test(item) and not item.nodeid.startswith(CLUSTER_FOLDER)]
