"""Torch Datasets over the face-track cache: the samples a specialist trains and predicts on.

`FrameSampleDataset` gives one sample per cached frame (BG, CM, RR); `ClipSampleDataset` one per clip
of consecutive frames (AV, TM). An item is `(inputs, label, meta)`: `inputs` is exactly what
`specialist.view(entry, positions)` returns (augmented crops go in first, when a stage asks for it),
`label` a float 0/1 tensor, and `meta` ints/floats that identify the sample (`index` in the dataset,
`video` = row number in `dataset.rows`, first frame `position`, its `time`).

What one sample is comes from `sample_groups`, the one grouping that training, evaluation, the panel
fit and detection all use: a frame specialist's samples are the cached frames; a clip specialist's are
consecutive, non-overlapping windows of its own `clip_len` inside each cached clip (a cached clip
longer than clip_len gives several, its leftover tail and a shorter clip give none).

Items are listed from the cache index alone (n_frames / n_clips, see `sample_count`), so building a
dataset over a large cache reads no per-video metadata; entries open lazily in the worker that needs them.
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


SAMPLE_KINDS = ("frame", "clip")


def clip_windows(n: int, clip_len: int | None) -> range:
    """Start offsets of the samples in a cached clip of n frames: consecutive, non-overlapping windows
    of clip_len (None: the clip whole). A clip shorter than clip_len gives none: a clip specialist
    only ever sees clip_len real consecutive frames, never a padded clip."""
    if clip_len is not None and clip_len < 1:
        raise ValueError(f"clip_len must be at least 1, got {clip_len}")
    size = n if clip_len is None else clip_len
    return range(0, n - size + 1, size) if n > 0 else range(0)


def sample_groups(track, sample_kind: str, clip_len: int | None = None) -> list[list[int]]:
    """The samples of one face track as lists of frame positions, in time order: THE grouping that
    the cache datasets (training, evaluation, panel fit) and detection share.

    `track`: a FaceTrackEntry (cached or in memory) or its TrackMeta. "frame": one sample per frame.
    "clip": per cached clip, the windows `clip_windows` gives (clip_len = the specialist's own).
    """
    meta = getattr(track, "meta", track)
    if sample_kind == "frame":
        return [[p] for p in range(len(meta.frames))]
    if sample_kind != "clip":
        raise ValueError(f"unknown sample_kind {sample_kind!r}; choose one of {', '.join(SAMPLE_KINDS)}")
    clips: dict[int, list[int]] = {}
    for pos, f in enumerate(meta.frames):
        clips.setdefault(f.clip, []).append(pos)
    return [g[i : i + (clip_len or len(g))] for c in sorted(clips) for g in [clips[c]] for i in clip_windows(len(g), clip_len)]


def sample_count(row: CacheIndexRow, sample_kind: str, clip_len: int | None = None,
                 entry: Callable[[], FaceTrackEntry] | None = None) -> int:
    """len(sample_groups(...)) of a cached video, from its index row alone.

    `dfpanel extract` writes every clip of a video with the same length (`plan_clips`; a track fills
    each clip it appears in), so a clip holds n_frames / n_clips frames. Only a video whose counts do
    not divide (a cache not written by `dfpanel extract`) costs a read of its meta.json, via `entry`."""
    if sample_kind == "frame":
        return row.n_frames
    if sample_kind != "clip":
        raise ValueError(f"unknown sample_kind {sample_kind!r}; choose one of {', '.join(SAMPLE_KINDS)}")
    if row.n_clips <= 0:
        return 0
    per_clip, rest = divmod(row.n_frames, row.n_clips)
    if rest == 0 or entry is None:
        return row.n_clips * len(clip_windows(per_clip, clip_len))
    return len(sample_groups(entry(), sample_kind, clip_len))


def clip_len_of(model) -> int | None:
    """A specialist's own clip length (its config's clip_len), None for a model without one."""
    cfg = getattr(model, "config", None) or {}
    value = cfg.get("clip_len") if isinstance(cfg, dict) else None
    return None if value is None else int(value)


class CacheSampleDataset(Dataset):
    """The samples (`sample_groups`) of the given cache rows; subclasses fix `sample_kind`.

    `clip_len` is the specialist's own clip length (clip samples); None takes each cached clip whole.
    `open_entry(row)` opens a row's entry when given (default: the folder `cache_root / row.dir`).
    """

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
        clip_len: int | None = None,
        gate: Callable[[FaceTrackEntry, Sequence[int]], str | None] | None = None,
        open_entry: Callable[[CacheIndexRow], FaceTrackEntry] | None = None,
    ):
        self.root = Path(cache_root)
        self.gate = gate
        self.open_entry = open_entry
        self.rows = list(rows)
        self.view = view
        self.clip_len = clip_len
        self.augment = augment if augment else None
        self._entries: OrderedDict[int, FaceTrackEntry] = OrderedDict()
        self._entry_cache_size = entry_cache_size
        self.items: list[tuple[int, int]] = [
            (vi, k) for vi, row in enumerate(self.rows) for k in spaced(self._count(vi, row), per_video)
        ]
        self.labels: list[int] = [self.rows[vi].label for vi, _ in self.items]

    def _count(self, video: int, row: CacheIndexRow) -> int:
        return sample_count(row, self.sample_kind, self.clip_len, entry=lambda: self.entry(video))

    def _positions(self, entry: FaceTrackEntry, k: int) -> list[int]:
        groups = sample_groups(entry, self.sample_kind, self.clip_len)
        if k >= len(groups):
            what = "frames" if self.sample_kind == "frame" else f"clips of {self.clip_len or 'its'} frames"
            raise DataError(f"{entry.folder}: cache index says more {what} than meta.json holds; re-extract it")
        return groups[k]

    def __len__(self) -> int:
        return len(self.items)

    def entry(self, video: int) -> FaceTrackEntry:
        """The cache entry of row `video`, kept in a small per-worker LRU (metadata only, not pixels)."""
        if video in self._entries:
            self._entries.move_to_end(video)
            return self._entries[video]
        row = self.rows[video]
        entry = self.open_entry(row) if self.open_entry is not None else FaceTrackEntry(self.root / row.dir)
        self._entries[video] = entry
        if len(self._entries) > self._entry_cache_size:
            self._entries.popitem(last=False)
        return entry

    def __getitem__(self, index: int):
        return self.sample(index, self.entry(self.items[index][0]))

    def sample(self, index: int, entry: FaceTrackEntry):
        """Item `index` cut from `entry`, its video's entry however it was opened (the cache folder
        here; a shard read in sequence by `views.stream`): one code path for both."""
        video, k = self.items[index]
        positions = self._positions(entry, k)
        if self.augment is not None:
            entry = self.augment(entry, positions, int(np.random.randint(0, 2**31 - 1)))
        inputs = self.view(entry, positions)
        label = torch.tensor(float(self.rows[video].label))
        return inputs, label, self.sample_meta(index, video, entry, positions)

    def sample_meta(self, index: int, video: int, entry: FaceTrackEntry, positions: Sequence[int]) -> dict:
        """`index`, `video`, first frame `position` and its `time`; `gate`: why the specialist's gate
        says the sample holds no evidence (AV: "no speech in the clip"), "" when it counts (strings
        collate, None would not); `weight` 0.0 for a gated sample, else 1.0. Losses, validation and
        video scores skip gated samples; the gate runs here once, in the worker that cuts the view."""
        reason = (self.gate(entry, positions) or "") if self.gate is not None else ""
        return {
            "index": index,
            "video": video,
            "position": positions[0],
            "time": float(entry.meta.frames[positions[0]].time),
            "gate": reason,
            "weight": 0.0 if reason else 1.0,
        }

    def class_counts(self) -> Counter:
        return Counter(self.labels)


class FrameSampleDataset(CacheSampleDataset):
    """One sample per cached frame (`per_video` caps it to evenly spaced frames)."""

    sample_kind = "frame"


class ClipSampleDataset(CacheSampleDataset):
    """One sample per clip_len window of each cached clip (`per_video` caps it to evenly spaced ones)."""

    sample_kind = "clip"


def dataset_for(kind: str):
    """The Dataset class for a specialist's `sample_kind`."""
    try:
        return {"frame": FrameSampleDataset, "clip": ClipSampleDataset}[kind]
    except KeyError:
        raise ValueError(f"unknown sample_kind {kind!r}") from None


def specialist_dataset(model, cache_root: str | os.PathLike, rows: Sequence[CacheIndexRow], **kwargs) -> CacheSampleDataset:
    """The dataset of `model`'s samples: its sample kind, its clip length and its view (the picklable
    `view_fn()` when it has one, so DataLoader workers get no copy of the model)."""
    view = model.view_fn() if hasattr(model, "view_fn") else model.view
    kwargs.setdefault("gate", model.gate_fn() if hasattr(model, "gate_fn") else None)
    return dataset_for(model.sample_kind)(cache_root, rows, view, clip_len=clip_len_of(model), **kwargs)


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


