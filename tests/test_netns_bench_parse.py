"""The log parsing of ``bench/netns_membership.py`` (the bench itself needs root and netns).

The lines are real ones, written by Corosync 3.1.7 and by our daemon in that bench.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from types import ModuleType

from tests._project import ROOT


def _bench() -> ModuleType:
    name = "netns_membership_under_test"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "netns_membership.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _bench()

COROSYNC_SURVIVOR = """\
Dec 01 20:58:00.439 [25045] vm corosync notice  [QUORUM] Sync members[1]: 1
Dec 01 20:58:00.439 [25045] vm corosync notice  [TOTEM ] A new membership (1.5) was formed. \
Members joined: 1
Dec 01 20:58:00.439 [25045] vm corosync notice  [QUORUM] Members[1]: 1
Dec 01 20:58:02.659 [25045] vm corosync notice  [QUORUM] Sync members[3]: 1 2 3
Dec 01 20:58:02.659 [25045] vm corosync notice  [TOTEM ] A new membership (1.9) was formed. \
Members joined: 2 3
Dec 01 20:58:02.663 [25045] vm corosync notice  [QUORUM] Members[3]: 1 2 3
Dec 01 20:58:06.099 [25045] vm corosync notice  [TOTEM ] Token has not been received in 2737 ms
Dec 01 20:58:11.395 [25045] vm corosync notice  [QUORUM] Sync left[1]: 3
Dec 01 20:58:11.395 [25045] vm corosync notice  [TOTEM ] A new membership (1.d) was formed. \
Members left: 3
Dec 01 20:58:11.399 [25045] vm corosync notice  [QUORUM] Members[2]: 1 2
Dec 01 20:58:14.771 [25045] vm corosync notice  [TOTEM ] A new membership (1.12) was formed. \
Members joined: 3
Dec 01 20:58:14.775 [25045] vm corosync notice  [QUORUM] Members[3]: 1 2 3
""".splitlines()

OURS_NODE3 = """\
Dec 01 20:58:17.037 [25225] vm corosync notice  [TOTEM ] A new membership (3.5) was formed. \
Members joined: 3
Dec 01 20:58:17.037 [25225] vm corosync notice  [MAIN  ] Members[1]: 3
Dec 01 20:58:17.174 [25225] vm corosync notice  [TOTEM ] A new membership (1.9) was formed. \
Members joined: 1 2
Dec 01 20:58:17.174 [25225] vm corosync notice  [MAIN  ] Members[3]: 1 2 3
""".splitlines()


def _at(text: str) -> float:
    return datetime.strptime(f"2026 {text}", "%Y %b %d %H:%M:%S.%f").timestamp()


def test_stamp_is_local_time_with_milliseconds() -> None:
    assert bench.parse_stamp(COROSYNC_SURVIVOR[0], 2026) == _at("Dec 01 20:58:00.439")
    assert bench.parse_stamp("no stamp here", 2026) is None
    assert bench.parse_stamp("Foo 01 20:58:00.439 x", 2026) is None


def test_view_is_folded_from_joined_and_left() -> None:
    changes = bench.membership_changes(COROSYNC_SURVIVOR, 2026)
    assert [sorted(members) for _, members in changes] == [[1], [1, 2, 3], [1, 2], [1, 2, 3]]
    assert changes[2][0] == _at("Dec 01 20:58:11.395")


def test_a_node_that_left_and_joined_in_one_change_is_a_member() -> None:
    lines = [
        "Dec 03 14:39:12.100 [1] vm corosync notice  [TOTEM ] A new membership (1.5) was "
        "formed. Members joined: 1 2",
        "Dec 03 14:39:12.952 [1] vm corosync notice  [TOTEM ] A new membership (1.9) was "
        "formed. Members joined: 1 3 left: 1",
    ]
    changes = bench.membership_changes(lines, 2026)
    assert [sorted(members) for _, members in changes] == [[1, 2], [1, 2, 3]]


def test_members_lines_skip_sync_lines() -> None:
    corosync = bench.members_lines(COROSYNC_SURVIVOR, 2026)
    assert [sorted(m) for _, m in corosync] == [[1], [1, 2, 3], [1, 2], [1, 2, 3]]
    ours = bench.members_lines(OURS_NODE3, 2026)
    assert [sorted(m) for _, m in ours] == [[3], [1, 2, 3]]


def test_first_at_finds_the_view_after_the_action() -> None:
    changes = bench.membership_changes(COROSYNC_SURVIVOR, 2026)
    everyone = frozenset({1, 2, 3})
    assert bench.first_at(changes, everyone, _at("Dec 01 20:58:00.000")) == _at(
        "Dec 01 20:58:02.659"
    )
    rejoin = bench.first_at(changes, everyone, _at("Dec 01 20:58:12.000"))
    assert rejoin == _at("Dec 01 20:58:14.771")
    assert bench.first_at(changes, frozenset({1, 2}), _at("Dec 01 20:58:12.000")) is None
    ours = bench.membership_changes(OURS_NODE3, 2026)
    assert bench.first_at(ours, everyone, 0.0) == _at("Dec 01 20:58:17.174")


def test_summary() -> None:
    assert bench.summarize([]) == {"n": 0}
    got = bench.summarize([3.0, 1.0, 2.0])
    assert (got["median"], got["min"], got["max"], got["n"]) == (2.0, 1.0, 3.0, 3)
