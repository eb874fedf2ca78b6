"""The CPG process table: members sorted by (nodeid, pid), the node test on the hot path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pycorosync.services.cpg.groups import ProcessTable

processes = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5)), max_size=12)


@given(processes, processes, st.integers(0, 7))
def test_node_in_group_agrees_with_the_members(
    added: list[tuple[int, int]], removed: list[tuple[int, int]], nodeid: int
) -> None:
    table = ProcessTable()
    for process in added:
        table.add(b"g", process)
    for process in removed:
        table.remove(b"g", process)
    members = table.members(b"g")
    assert list(members) == sorted(set(added) - set(removed))
    assert table.node_in_group(b"g", nodeid) == any(node == nodeid for node, _ in members)
    assert not table.node_in_group(b"other", nodeid)
