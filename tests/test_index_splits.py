"""Deterministic group-disjoint splits (dfpanel.index.splits)."""

from __future__ import annotations

import random
from collections import Counter

from dfpanel.index.manifest import VideoRecord
from dfpanel.index.splits import assign_splits

FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def records(groups_and_sizes):
    out = []
    for g, n in groups_and_sizes:
        out += [VideoRecord(id=f"{g}_{i}", path=f"{g}/{i}.mp4", label=i % 2, fake_type="x", split="train",
                            dataset="t", group=g) for i in range(n)]
    return out


def test_fractions_hold_with_uneven_group_sizes():
    rng = random.Random(0)
    recs = records([(f"g{i}", rng.randint(1, 30)) for i in range(600)])
    assign_splits(recs, FRACTIONS, salt="t")
    counts = Counter(r.split for r in recs)
    for split, frac in FRACTIONS.items():
        assert abs(counts[split] / len(recs) - frac) < 0.02, counts


def test_groups_never_straddle_splits_and_input_order_does_not_matter():
    recs = records([(f"id{i}", 1 + i % 5) for i in range(80)])
    assign_splits(recs, FRACTIONS, salt="t")
    first = {r.id: r.split for r in recs}
    assert all(len({first[r.id] for r in recs if r.group == g}) == 1 for g in {r.group for r in recs})
    shuffled = records([(f"id{i}", 1 + i % 5) for i in range(80)])
    random.Random(1).shuffle(shuffled)
    assign_splits(shuffled, FRACTIONS, salt="t")
    assert {r.id: r.split for r in shuffled} == first


def test_salt_changes_the_draw():
    a, b = records([(f"id{i}", 2) for i in range(60)]), records([(f"id{i}", 2) for i in range(60)])
    assign_splits(a, FRACTIONS, salt="one")
    assign_splits(b, FRACTIONS, salt="two")
    assert [r.split for r in a] != [r.split for r in b]


def test_tiny_datasets_still_get_every_split():
    recs = records([("a", 5), ("b", 1), ("c", 1)])
    assign_splits(recs, FRACTIONS, salt="t")
    assert {r.split for r in recs} == {"train", "val", "test"}
    one = records([("only", 3)])
    assign_splits(one, FRACTIONS, salt="t")
    assert {r.split for r in one} == {"train"}


def test_adding_groups_moves_few_existing_ones():
    base = records([(f"id{i}", 3) for i in range(300)])
    assign_splits(base, FRACTIONS, salt="t")
    grown = records([(f"id{i}", 3) for i in range(330)])
    assign_splits(grown, FRACTIONS, salt="t")
    before = {r.group: r.split for r in base}
    moved = sum(1 for r in grown if r.group in before and before[r.group] != r.split) // 3
    assert moved < 300 * 0.1
