"""Streaming a shard set (`dfpanel cache pack`): the samples of `views.samples`, read in sequence.

`ShardStreamDataset` wraps the map-style dataset (`CacheSampleDataset`) of the same rows, its `base`:
the items, their numbers, the view, the gate, the augmentation and the meta are all the base's own.
Streaming changes only how a video's entry is opened (read from a shard, in order, instead of from its
folder), then cuts each item with `base.sample(index, entry)`. So training on shards and on the cache
folder is the same thing: the same samples, tensors and meta dicts, in another order.

**Readers.** Every (DDP rank, DataLoader worker) pair is one reader. Each epoch the shards that hold
selected samples are dealt to the readers, in a shuffled order seeded by (seed, epoch) when training
(in index order otherwise), each to the reader with the fewest samples so far: every shard is read by
exactly one reader per epoch. There must be at least as many such shards as readers (a one-line
ConfigError says to pack smaller shards or use fewer workers).

**The even split.** DDP hangs when ranks run different numbers of batches, and shards rarely divide
evenly, so every reader yields a fixed number of samples q per epoch:
  - train: q = (samples / readers), rounded down to whole batches (samples: the dataset's, or
    `samples_per_epoch`). A reader whose shards hold more leaves its last ones out this epoch (after
    the shuffle buffer: a random few; the deal changes every epoch); one whose shards hold fewer reads
    them again from its first shard until it has q. Every batch is full, and a rank runs
    workers x q / batch_size batches. When samples divide evenly, each is yielded exactly once.
  - val: nothing is left out. q = what the fullest reader holds; the others repeat some of theirs
    (DistributedSampler pads a validation split across ranks the same way).
  - all (scoring on one process, e.g. DFDC chunk order): every sample once, no rank split, no padding.
`len()` is what a rank's DataLoader divides by its batch size: batches x batch size.

**Shuffling** (train): the shard order per epoch, and a buffer of `buffer_size` samples per reader
(an item waits in it as (index, entry): its view is cut when it leaves). Deterministic per seed.

**Class balance** (`balanced`, train): a WeightedRandomSampler needs random access, so each sample is
emitted k times instead, k drawn so that E[k] = samples / (classes x samples of its class): each class
comes up equally often in expectation, as the map-style balanced sampler draws them, the minority
repeated and the majority thinned; the buffer spreads the repeats out.

**Epochs.** Lightning sets no epoch on an IterableDataset: each `iter()` uses `epoch` and advances it,
in whichever copy runs (persistent DataLoader workers keep their own, in step); `set_epoch` before
the loader starts (the data module does, from the trainer, so a resumed run picks up its epoch).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.shards import ShardSet
from dfpanel.views.samples import CacheSampleDataset

STREAM_MODES = ("train", "val", "all")
MAX_EMPTY_PASSES = 100


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process under torch.distributed; (0, 1) without it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardStreamDataset(IterableDataset):
    def __init__(
        self,
        base: CacheSampleDataset,
        shards: ShardSet,
        *,
        mode: str = "train",
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        buffer_size: int = 1000,
        balanced: bool = False,
        samples_per_epoch: int | None = None,
        subset: Iterable[int] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        verify: bool = True,
    ):
        if mode not in STREAM_MODES:
            raise ValueError(f"unknown stream mode {mode!r}; choose one of {', '.join(STREAM_MODES)}")
        self.base, self.shards, self.mode = base, shards, mode
        self.batch_size = max(1, int(batch_size))
        self.num_workers = int(num_workers)  # the DataLoader's: each worker is a reader
        self.seed = int(seed)
        self.buffer_size = int(buffer_size) if mode == "train" else 0
        self.balanced = bool(balanced) and mode == "train"
        self.samples_per_epoch = samples_per_epoch if mode == "train" else None
        self.rank, self.world_size = rank, world_size  # None: torch.distributed's, when iterated
        self.verify = verify
        self.epoch = 0
        keep = None if subset is None else {int(i) for i in subset}
        video_items: dict[int, list[int]] = {}
        for i, (video, _) in enumerate(base.items):
            if keep is None or i in keep:
                video_items.setdefault(video, []).append(i)
        self._video_items = video_items
        self._key_video: dict[str, int] = {}
        by_shard: dict[int, list[int]] = {}
        for video, row in enumerate(base.rows):
            shard = shards.shard_of(row)
            if shard is None:
                raise DataError(f"{shards.location}: video {row.dataset}/{row.id} is in none of its shards; "
                                f"pack the shards again")
            if video in video_items:
                self._key_video[shards.key_of(row)] = video
                by_shard.setdefault(shard, []).extend(video_items[video])
        self._shards = sorted(by_shard)  # the set's shards that hold selected samples, in set order
        self._shard_items = [by_shard[s] for s in self._shards]
        self.selected = sorted(i for items in video_items.values() for i in items)
        self.labels: list[int] = [base.labels[i] for i in self.selected]
        self.rows, self.items = base.rows, base.items
        counts = Counter(self.labels)
        self._class_weight = {c: len(self.labels) / (len(counts) * n) for c, n in counts.items()}

    # ---- the plan: from shards.json alone, the same in every process ---------------------------
    @property
    def n_samples(self) -> int:
        """Samples in the dataset (each once), whatever a rank yields per epoch."""
        return len(self.selected)

    @property
    def n_shards(self) -> int:
        """Shards that hold selected samples: at most this many readers can be fed."""
        return len(self._shards)

    @property
    def readers_per_rank(self) -> int:
        return max(1, self.num_workers)

    def world(self) -> tuple[int, int]:
        if self.mode == "all":
            return 0, 1
        if self.world_size is not None:
            return int(self.rank or 0), int(self.world_size)
        return rank_world()

    def plan(self, epoch: int, world: int) -> list[list[int]]:
        """Per reader (rank x readers_per_rank + worker): the shards it reads this epoch, in order, as
        positions in `self._shards`."""
        n = world * self.readers_per_rank
        if len(self._shards) < n and self.mode != "all":
            raise ConfigError(
                f"{self.shards.location}: {len(self._shards)} shard(s) hold the {self.mode} samples, fewer than the "
                f"{world} rank(s) x {self.readers_per_rank} loader worker(s) that each read whole shards; pack with "
                f"a smaller --shard-size or lower data.num_workers")
        order: list[int] = list(range(len(self._shards)))
        if self.mode == "train":
            order = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self._shards)).tolist()
        loads, out = [0] * n, [[] for _ in range(n)]
        for j in order:
            r = min(range(n), key=lambda k: (loads[k], k))
            out[r].append(j)
            loads[r] += len(self._shard_items[j])
        return out

    def _loads(self, epoch: int, world: int) -> list[int]:
        return [sum(len(self._shard_items[j]) for j in js) for js in self.plan(epoch, world)]

    def quota(self, world: int) -> int | None:
        """Samples every reader yields per epoch (None: mode all, each its own once)."""
        if self.mode == "all":
            return None
        if self.mode == "train":
            total = self.samples_per_epoch or self.n_samples
            return max(1, total // (world * self.readers_per_rank) // self.batch_size) * self.batch_size
        return max(self._loads(0, world))

    def __len__(self) -> int:
        b = self.batch_size
        _, world = self.world()
        if self.mode == "all":
            return sum(-(-n // b) for n in self._loads(0, 1)) * b
        return self.readers_per_rank * -(-self.quota(world) // b) * b

    # ---- reading ------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator:
        epoch = self.epoch
        self.epoch += 1
        return self._samples(epoch)

    def _samples(self, epoch: int) -> Iterator:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if workers != self.readers_per_rank:
            raise ConfigError(f"a shard stream planned for {self.readers_per_rank} reader(s) per rank runs in "
                              f"{workers} DataLoader worker(s); give the DataLoader num_workers={self.num_workers}")
        rank, world = self.world()
        reader = rank * self.readers_per_rank + worker
        mine = self.plan(epoch, world)[reader]
        rng = np.random.default_rng([self.seed, epoch, reader, 0xB0FF])
        quota = self.quota(world)
        for index, entry in self._shuffled(self._stream(mine, rng, repeat=quota is not None), rng, quota):
            yield self.base.sample(index, entry)

    def _stream(self, mine: list[int], rng: np.random.Generator, *, repeat: bool) -> Iterator[tuple[int, object, int]]:
        """(item index, entry, pass) from the reader's shards; with `repeat`, again from the first
        shard after the last (the consumer stops when it has its quota)."""
        empty = 0
        for p in itertools.count() if repeat and mine else range(1):
            got = 0
            for j in mine:
                shard = self.shards.shards[self._shards[j]]
                for key, files in self.shards.read(shard, verify=self.verify):
                    video = self._key_video.get(key)
                    if video is None:  # a video of the set this dataset does not use (other split, dataset...)
                        continue
                    entry = self.shards.entry(shard, key, files)
                    for index in self._video_items[video]:
                        for _ in range(self._copies(index, rng)):
                            got += 1
                            yield index, entry, p
            empty = 0 if got else empty + 1
            if empty >= MAX_EMPTY_PASSES:
                raise DataError(f"{self.shards.location}: a reader got no samples from its shards in "
                                f"{MAX_EMPTY_PASSES} passes; turn data.balanced off or pack smaller shards")

    def _copies(self, index: int, rng: np.random.Generator) -> int:
        if not self.balanced:
            return 1
        w = self._class_weight[self.base.labels[index]]
        k = int(w)
        return k + int(rng.random() < w - k)

    def _shuffled(self, stream, rng: np.random.Generator, quota: int | None) -> Iterator[tuple[int, object]]:
        """The stream through the shuffle buffer, cut at `quota`: a repeated pass is read only as far as
        the quota needs."""
        size, buf, emitted = self.buffer_size, [], 0
        for index, entry, p in stream:
            if quota is not None and p > 0 and emitted + len(buf) >= quota:
                break
            if size <= 1:
                yield index, entry
            elif len(buf) < size:
                buf.append((index, entry))
                continue
            else:
                k = int(rng.integers(len(buf)))
                yield buf[k]
                buf[k] = (index, entry)
            emitted += 1
            if quota is not None and emitted >= quota:
                return
        for k in (rng.permutation(len(buf)).tolist() if size > 1 else range(len(buf))):
            if quota is not None and emitted >= quota:
                return
            yield buf[k]
            emitted += 1

    def few_shard_sample(self, k: int, seed: int) -> list[int]:
        """k item indices drawn at random from as few shards as hold them (taken in a seeded random
        order): a sample of the data that streams only a shard or two, not the whole set."""
        rng = np.random.default_rng([int(seed), 0xC4])
        pool: list[int] = []
        for j in rng.permutation(len(self._shards)).tolist():
            pool += self._shard_items[j]
            if len(pool) >= k:
                break
        return sorted(rng.choice(pool, size=min(k, len(pool)), replace=False).tolist()) if pool else []
