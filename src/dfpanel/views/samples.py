"""Torch Datasets over the face-track cache: the samples a specialist trains and predicts on.

`FrameSampleDataset` gives one sample per cached frame (BG, CM, RR); `ClipSampleDataset` one per clip
of consecutive frames (AV, TM). An item is `(inputs, label, meta)`: `inputs` is exactly what
`specialist.view(entry, positions)` returns (augmented crops go in first, when a stage asks for it),
`label` a float 0/1 tensor, and `meta` ints/floats that identify the sample (`index` in the dataset,
`video` = row number in `dataset.rows`, first frame `position`, its `time`).

Items are listed from the cache index alone (n_frames / n_clips), so building a dataset over a large
cache reads no per-video metadata; entries open lazily in the worker that needs them.
"""

from __future__ import annotations

import os
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from dfpanel.errors import DataError
from dfpanel.extract.cache import CacheIndexRow, FaceTrackEntry

ViewFn = Callable[[FaceTrackEntry, Sequence[int]], dict]


def select_rows(
    rows: Iterable[CacheIndexRow],
    *,
    split: str | None = None,
    dataset: str | None = None,
    ids: set[str] | None = None,
    chunks: Sequence[int] | None = None,
    max_videos: int | None = None,
    seed: int = 0,
) -> list[CacheIndexRow]:
    """Filter cache rows; `max_videos` keeps a class-balanced, seeded subset (reals and fakes alternate)."""
    chunk_set = None if chunks is None else set(chunks)
    out = [
        r
        for r in rows
        if (split is None or r.split == split)
        and (dataset is None or r.dataset == dataset)
        and (ids is None or r.id in ids)
        and (chunk_set is None or r.chunk in chunk_set)
    ]
    out.sort(key=lambda r: (r.dataset, r.id))
    if max_videos is not None and len(out) > max_videos:
        rng = random.Random(seed)
        by_label = {lab: [r for r in out if r.label == lab] for lab in (0, 1)}
        for group in by_label.values():
            rng.shuffle(group)
        interleaved = [r for pair in _zip_longest(by_label[0], by_label[1]) for r in pair if r is not None]
        out = sorted(interleaved[:max_videos], key=lambda r: (r.dataset, r.id))
    return out


def _zip_longest(a: list, b: list):
    for i in range(max(len(a), len(b))):
        yield (a[i] if i < len(a) else None, b[i] if i < len(b) else None)


def spaced(n: int, k: int | None) -> list[int]:
    """k evenly spaced indices out of range(n) (all of them when k is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


class CacheSampleDataset(Dataset):
    """Shared machinery; subclasses say what a sample is (`_positions`)."""

    sample_kind = ""

    def __init__(
        self,
        cache_root: str | os.PathLike,
        rows: Sequence[CacheIndexRow],
        view: ViewFn,
        *,
        per_video: int | None = None,
        augment: Callable | None = None,
        entry_cache_size: int = 64,
    ):
        self.root = Path(cache_root)
        self.rows = list(rows)
        self.view = view
        self.augment = augment if augment else None
        self.items: list[tuple[int, int]] = [
            (vi, k) for vi, row in enumerate(self.rows) for k in spaced(self._count(row), per_video)
        ]
        self.labels: list[int] = [self.rows[vi].label for vi, _ in self.items]
        self._entries: OrderedDict[int, FaceTrackEntry] = OrderedDict()
        self._entry_cache_size = entry_cache_size

    def _count(self, row: CacheIndexRow) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _positions(self, entry: FaceTrackEntry, k: int) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.items)

    def entry(self, video: int) -> FaceTrackEntry:
        """The cache entry of row `video`, kept in a small per-worker LRU (metadata only, not pixels)."""
        if video in self._entries:
            self._entries.move_to_end(video)
            return self._entries[video]
        entry = FaceTrackEntry(self.root / self.rows[video].dir)
        self._entries[video] = entry
        if len(self._entries) > self._entry_cache_size:
            self._entries.popitem(last=False)
        return entry

    def __getitem__(self, index: int):
        video, k = self.items[index]
        entry = self.entry(video)
        positions = self._positions(entry, k)
        if self.augment is not None:
            entry = self.augment(entry, positions, int(np.random.randint(0, 2**31 - 1)))
        inputs = self.view(entry, positions)
        label = torch.tensor(float(self.rows[video].label))
        meta = {
            "index": index,
            "video": video,
            "position": positions[0],
            "time": float(entry.meta.frames[positions[0]].time),
        }
        return inputs, label, meta

    def class_counts(self) -> Counter:
        return Counter(self.labels)


class FrameSampleDataset(CacheSampleDataset):
    """One sample per cached frame (`per_video` caps it to evenly spaced frames)."""

    sample_kind = "frame"

    def _count(self, row: CacheIndexRow) -> int:
        return row.n_frames

    def _positions(self, entry: FaceTrackEntry, k: int) -> list[int]:
        if k >= len(entry):
            raise DataError(f"{entry.folder}: cache index says more frames than meta.json holds; re-extract it")
        return [k]


class ClipSampleDataset(CacheSampleDataset):
    """One sample per clip of consecutive frames (`per_video` caps it to evenly spaced clips)."""

    sample_kind = "clip"

    def _count(self, row: CacheIndexRow) -> int:
        return row.n_clips

    def _positions(self, entry: FaceTrackEntry, k: int) -> list[int]:
        clips = entry.clips()
        keys = sorted(clips)
        if k >= len(keys):
            raise DataError(f"{entry.folder}: cache index says more clips than meta.json holds; re-extract it")
        return clips[keys[k]]


def dataset_for(kind: str):
    """The Dataset class for a specialist's `sample_kind`."""
    try:
        return {"frame": FrameSampleDataset, "clip": ClipSampleDataset}[kind]
    except KeyError:
        raise ValueError(f"unknown sample_kind {kind!r}") from None


def balanced_sampler(
    labels: Sequence[int], num_samples: int | None = None, generator: torch.Generator | None = None
) -> WeightedRandomSampler:
    """Draws each class equally often (weight 1/count of its class), with replacement."""
    counts = Counter(int(x) for x in labels)
    weights = torch.tensor([1.0 / counts[int(x)] for x in labels], dtype=torch.double)
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True, generator=generator)


def pos_weight_from_labels(labels: Sequence[int]) -> float:
    """BCE pos_weight = negatives / positives, so both classes weigh the same in the loss."""
    counts = Counter(int(x) for x in labels)
    if counts[1] == 0 or counts[0] == 0:
        return 1.0
    return counts[0] / counts[1]


