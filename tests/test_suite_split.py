"""The rule that keeps `make test`'s split whole: a test marked ray or outage outside tests/cluster/
would run in neither of scripts/test.sh's processes, so collection refuses it."""

from __future__ import annotations

import pytest

from tests.support.suite import misplaced_cluster_tests


class FakeItem:
    def __init__(self, nodeid: str, *markers: str):
        self.nodeid, self.markers = nodeid, set(markers)

    def get_closest_marker(self, name: str):
        return pytest.mark.ray if name in self.markers else None


def test_only_ray_or_outage_tests_outside_the_cluster_folder_are_misplaced():
    items = [
        FakeItem("tests/cluster/test_cluster_e2e.py::test_a", "ray"),
        FakeItem("tests/cluster/test_cluster_outage.py::test_b", "ray", "outage"),
        FakeItem("tests/cluster/test_cluster_compose.py::test_c"),
        FakeItem("tests/db/test_db_queue.py::test_d"),
        FakeItem("tests/db/test_db_outage.py::test_e", "outage"),
        FakeItem("tests/service/test_service_x.py::test_f", "ray"),
    ]
    assert misplaced_cluster_tests(items) == ["tests/db/test_db_outage.py::test_e", "tests/service/test_service_x.py::test_f"]

