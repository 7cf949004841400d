"""Rendezvous hashing (plan/placement.py): stable, balanced, and ~1/N movement."""

from __future__ import annotations

from collections import Counter

import pytest

from arrowroot.flight_server.plan.placement import Placement, chunk_key, file_id, order

KEYS = [chunk_key(file_id(f"run{i // 8:04d}.root", 1000 + i // 8, 1.7e9), "events", (i % 8) * 1000,
                  (i % 8 + 1) * 1000) for i in range(6000)]


def owners(nodes: list[str]) -> list[str]:
    p = Placement(nodes)
    return [p.owner(k) for k in KEYS]


def test_order_is_stable_and_independent_of_how_nodes_are_listed() -> None:
    a = Placement(["n1", "n2", "n3", "n4"])
    b = Placement(["n4", "n2", "n1", "n3", "n2"])
    for key in KEYS[:500]:
        first = a.order(key)
        assert sorted(first) == ["n1", "n2", "n3", "n4"]
        assert first == b.order(key) == a.order(key) == order(key, ["n3", "n1", "n4", "n2"])
        assert a.order(key, 2) == first[:2]
        assert a.owner(key) == first[0]


def test_keys_spread_evenly() -> None:
    counts = Counter(owners(["n1", "n2", "n3", "n4"]))
    assert set(counts) == {"n1", "n2", "n3", "n4"}
    for n in counts.values():
        assert abs(n / len(KEYS) - 0.25) < 0.03, counts


def test_adding_a_node_moves_about_one_in_n_keys_all_to_the_new_node() -> None:
    before = owners(["n1", "n2"])
    after = owners(["n1", "n2", "n3"])
    moved = [(b, a) for b, a in zip(before, after) if b != a]
    assert abs(len(moved) / len(KEYS) - 1 / 3) < 0.03
    assert {a for _, a in moved} == {"n3"}   # nothing shuffles between the old nodes


def test_removing_a_node_hands_its_keys_to_their_second_node_only() -> None:
    full = Placement(["n1", "n2", "n3", "n4"])
    without = Placement(["n1", "n2", "n4"])
    for key in KEYS:
        first, second = full.order(key, 2)
        if first == "n3":
            assert without.owner(key) == second  # the fallback a client already had
        else:
            assert without.owner(key) == first


def test_keys_differ_by_file_identity_and_range() -> None:
    assert file_id("a.root", 10, 1.0) != file_id("a.root", 11, 1.0) != file_id("a.root", 10, 2.0)
    assert chunk_key("f", "t", 0, 10) != chunk_key("f", "t", 0, 11) != chunk_key("f", "u", 0, 10)


def test_no_nodes() -> None:
    p = Placement([])
    assert p.order(b"k") == [] and len(p) == 0
    with pytest.raises(ValueError, match="no nodes"):
        p.owner(b"k")
