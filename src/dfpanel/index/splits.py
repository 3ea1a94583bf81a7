"""Deterministic, group-disjoint splits for datasets that lack an official one.

Groups (identities, original videos) are ordered by a salted sha1 of their name, then laid end to
end on [0, 1) with widths proportional to their video counts; a group goes to the split whose
interval holds its centre. So the split depends only on the names (no RNG state), sizes come out
close to the requested fractions even when groups differ in size, and adding videos moves only
groups near a boundary. On tiny datasets an empty split takes one group from the largest split, so
train/val/test all exist whenever there are enough groups.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from dfpanel.index.manifest import VideoRecord


def _order_key(salt: str, group: str) -> str:
    return hashlib.sha1(f"{salt}\x00{group}".encode()).hexdigest()


def assign_splits(
    records: Sequence[VideoRecord], fractions: dict[str, float], salt: str
) -> None:
    """Set `split` on every record from its `group`, in the given fractions (in place)."""
    if not records:
        return
    sizes = Counter(r.group for r in records)
    order = sorted(sizes, key=lambda g: _order_key(salt, g))
    names = list(fractions)
    total_w = sum(fractions.values())
    bounds, acc = [], 0.0
    for name in names:
        acc += fractions[name] / total_w
        bounds.append(acc)

    n = sum(sizes.values())
    split_of: dict[str, str] = {}
    done = 0
    for g in order:
        centre = (done + sizes[g] / 2) / n
        split_of[g] = next((s for s, b in zip(names, bounds) if centre < b), names[-1])
        done += sizes[g]

    _fill_empty_splits(split_of, order, names, fractions)
    for r in records:
        r.split = split_of[r.group]


def _fill_empty_splits(split_of: dict[str, str], order: list[str], names: list[str], fractions: dict[str, float]) -> None:
    wanted = [s for s in names if fractions[s] > 0]
    for empty in wanted:
        members = Counter(split_of.values())
        if members[empty]:
            continue
        donor = max(wanted, key=lambda s: members[s])
        if members[donor] < 2:
            return  # too few groups to give every split one
        # the donor's last group in hash order: deterministic and independent of dict order
        moved = [g for g in order if split_of[g] == donor][-1]
        split_of[moved] = empty
