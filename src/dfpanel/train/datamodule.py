"""LightningDataModule over the face-track cache (optionally narrowed by a manifest and a DFDC chunk).

The cache index already carries split and label, so the manifest only says which videos to use.
Datasets are built when the module is created (from the index alone, no per-video reads), because the
loss's class weight must be known before the LightningModule exists.

With `data.shards` (a shard set from `dfpanel cache pack`) the same datasets are built from the rows in
shards.json and streamed (`views.stream.ShardStreamDataset`): same samples, views and meta, read in
sequence, split across DataLoader workers and DDP ranks by whole shards. What needs random access
(pseudo-fakes, paired batches) is refused by the config (`check_streaming`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.cache import CacheIndexRow, FaceTrackCache
from dfpanel.extract.shards import ShardSet
from dfpanel.extract.spec import check_same_views
from dfpanel.index.manifest import manifest_hash, read_manifest
from dfpanel.train.augment import CropAugmenter
from dfpanel.train.config import StageConfig
from dfpanel.train.pseudo import PseudoFakeDataset, build_generators
from dfpanel.train.sampling import PairedBatchSampler
from dfpanel.views.samples import (
    balanced_sampler,
    dataset_for,
    pos_weight_from_labels,
    select_rows,
)
from dfpanel.views.stream import ShardStreamDataset, rank_world

log = logging.getLogger(__name__)

def manifest_ids(path: str | None) -> set[str] | None:
    return None if path is None else {r.id for r in read_manifest(path)}


def data_source(cfg: StageConfig, *, val: bool = False) -> FaceTrackCache | ShardSet:
    """Where a stage's rows and InputSpec come from: the cache folder, or the shard set it streams
    (`val`: `data.val_shards` when given). Both offer `rows()` and `input_spec`."""
    d = cfg.data
    if d.shards:
        return ShardSet(d.val_shards if val and d.val_shards else d.shards)
    if not d.cache:
        raise ConfigError(f"{cfg.source or 'config'}: no face-track cache given; pass --data CACHE (or set data.cache)")
    return FaceTrackCache(d.cache)


def data_name(cfg: StageConfig) -> str:
    """The training data's location, for messages."""
    return str(cfg.data.shards or cfg.data.cache)


def stage_rows(cfg: StageConfig, split: str, *, chunks: Sequence[int] | None = None,
               source: FaceTrackCache | ShardSet | None = None) -> list[CacheIndexRow]:
    """The cache rows of one split that a stage uses (from `source`, default `data_source(cfg)`)."""
    rows = (source if source is not None else data_source(cfg)).rows()
    return select_rows(
        rows,
        split=split,
        dataset=cfg.data.dataset,
        ids=manifest_ids(cfg.data.manifest),
        chunks=chunks,
        max_videos=cfg.data.max_videos,
        seed=cfg.trainer.seed,
    )


def data_hash(cfg: StageConfig, rows: Sequence[CacheIndexRow]) -> str:
    """sha256 of the manifest when there is one, else of the (dataset, id, label, split) rows used."""
    if cfg.data.manifest:
        return manifest_hash(cfg.data.manifest)
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: (r.dataset, r.id)):
        h.update(json.dumps([r.dataset, r.id, r.label, r.split]).encode())
    return h.hexdigest()


def real_partners(dataset) -> Callable[[int], list[int]]:
    """For a dataset's item, the items of the real videos it pairs with: same dataset and group (the
    FF++ pair, DFDC original, Celeb-DF identity that `dfpanel index` records)."""
    by_group: dict[tuple[str, str], list[int]] = {}
    for i, (video, _) in enumerate(dataset.items):
        row = dataset.rows[video]
        if row.label == 0:
            by_group.setdefault((row.dataset, row.group), []).append(i)

    def partners(i: int) -> list[int]:
        row = dataset.rows[dataset.items[i][0]]
        return by_group.get((row.dataset, row.group), [])

    return partners


class CacheDataModule(L.LightningDataModule):
    def __init__(
        self,
        cfg: StageConfig,
        view: Callable,
        sample_kind: str,
        *,
        chunk: int | None = None,
        clip_len: int | None = None,
        gate: Callable | None = None,
        mask_input: str | None = None,
        pseudofakes: Sequence[str] = (),
    ):
        super().__init__()
        self.cfg = cfg
        d = cfg.data
        pf = cfg.pseudofakes
        train_chunks = [chunk] if chunk is not None else d.chunks
        self.streaming = bool(d.shards)
        train_src, val_src = data_source(cfg), data_source(cfg, val=True) if d.val_shards else None
        self.train_rows = stage_rows(cfg, d.train_split, chunks=train_chunks, source=train_src)
        self.val_rows = stage_rows(cfg, d.val_split, source=val_src or train_src)
        if pf.mode == "only":  # trains from real videos alone: a dataset's own fakes are left out
            dropped = sum(r.label == 1 for r in self.train_rows + self.val_rows)
            if dropped:
                log.info("pseudofakes.mode only: leaving out %d fake videos of %s", dropped, data_name(cfg))
            self.train_rows = [r for r in self.train_rows if r.label == 0]
            self.val_rows = [r for r in self.val_rows if r.label == 0]
        where = f"{data_name(cfg)} (dataset={d.dataset or 'any'}, chunks={train_chunks or 'all'})"
        if not self.train_rows:
            what = "real " if pf.mode == "only" else ""
            raise DataError(f"{where}: no {what}{d.train_split!r} videos to train on; check --data, --manifest and data.dataset")
        if not self.val_rows:
            raise DataError(f"{where}: no {d.val_split!r} videos to validate on; the index must give some videos that split")
        # How the cache was extracted: copied into the weights sidecar, so detection extracts alike.
        self.input_spec = train_src.input_spec
        if val_src is not None:
            check_same_views(self.input_spec, val_src.input_spec, have_name=f"data.shards {d.shards}",
                             want_name=f"data.val_shards {d.val_shards}", labels=("train", "val"),
                             fix="pack both from caches extracted alike")
        cls = dataset_for(sample_kind)
        root = d.shards or d.cache
        self.train_set = cls(root, self.train_rows, view, per_video=d.frames_per_video, clip_len=clip_len,
                             augment=CropAugmenter(cfg.augment.transforms), gate=gate,
                             open_entry=train_src.layout if self.streaming else None)
        self.val_set = cls(root, self.val_rows, view, per_video=d.val_frames_per_video, clip_len=clip_len, gate=gate,
                           open_entry=(val_src or train_src).layout if self.streaming else None)
        if not len(self.train_set):  # (pseudo-fakes are twins of these samples: none without them)
            raise DataError(f"{where}: the {d.train_split!r} videos give no samples; are the cached clips shorter than clip_len {clip_len}?")
        if self.streaming:
            seed = cfg.trainer.seed
            self.train_set = ShardStreamDataset(self.train_set, train_src, mode="train", batch_size=d.batch_size,
                                                num_workers=d.num_workers, seed=seed, buffer_size=d.shuffle_buffer,
                                                balanced=d.balanced, samples_per_epoch=d.samples_per_epoch)
            self.val_set = ShardStreamDataset(self.val_set, val_src or train_src, mode="val",
                                              batch_size=d.val_batch_size or d.batch_size, num_workers=d.num_workers)
        elif pf.mode != "off" or mask_input is not None or d.paired:
            generators = build_generators(pf.generators, pseudofakes) if pf.mode != "off" else []
            seed = cfg.trainer.seed
            self.train_set = PseudoFakeDataset(self.train_set, generators, mode=pf.mode, ratio=pf.ratio, seed=seed,
                                               train=True, mask_input=mask_input, pair_of=real_partners(self.train_set))
            val_mode = pf.mode if pf.val else "off"
            self.val_set = PseudoFakeDataset(self.val_set, generators if val_mode != "off" else [], mode=val_mode,
                                             ratio=pf.ratio, seed=seed + 1, train=False, mask_input=mask_input)
        # val_auc is undefined without both classes (a small Celeb-DF or synthetic val split can be all
        # real). Training still runs: the stage keeps its last weights and skips early stopping (run.py).
        val_labels = set(self.val_set.labels)
        self.val_one_class: str | None = None
        if len(val_labels) < 2:
            self.val_one_class = {0: "real", 1: "fake"}.get(next(iter(val_labels), -1), "missing")
            log.warning("%s: the %r samples are all %s, so validation AUC is undefined: early stopping is off and "
                        "the best weights are the last epoch's; give the val split both classes to select by AUC",
                        where, d.val_split, self.val_one_class)
        self.data_hash = data_hash(cfg, self.train_rows + self.val_rows)

    @property
    def pos_weight(self) -> float:
        """Class weight of fakes in the loss. `auto`: from the train split as the loss will see it,
        i.e. 1.0 when the balanced sampler already draws both classes equally."""
        pw = self.cfg.optim.pos_weight
        if pw is None:
            return 1.0
        if pw == "auto":
            return 1.0 if self.cfg.data.balanced else pos_weight_from_labels(self.train_set.labels)
        return float(pw)

    def _stream_loader(self, dataset: ShardStreamDataset) -> DataLoader:
        """A stream's loader: as many workers as whole shards can feed on every rank (at most
        data.num_workers), each a reader of its own shards; batches are cut in the workers."""
        d = self.cfg.data
        _, world = rank_world()
        dataset.num_workers = 0
        dataset.plan(0, world)  # a one-line ConfigError now when the shards cannot feed every rank
        workers = min(d.num_workers, dataset.n_shards // world)
        if workers < d.num_workers:
            log.warning("%s: %d shard(s) hold the %s samples for %d rank(s): reading with %d loader worker(s) per rank, "
                        "not data.num_workers %d (pack smaller shards to use them all)", dataset.shards.location,
                        dataset.n_shards, dataset.mode, world, workers, d.num_workers)
        dataset.num_workers = workers
        trainer = getattr(self, "trainer", None)
        if dataset.mode == "train" and trainer is not None:
            dataset.set_epoch(trainer.current_epoch)  # a resumed run deals the shards of the epoch it is in
        return self._loader(dataset, dataset.batch_size, num_workers=workers)

    def _loader(self, dataset, batch_size: int | None, **kwargs) -> DataLoader:
        d = self.cfg.data
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        workers = kwargs.pop("num_workers", d.num_workers)
        if workers > 0:
            kwargs.setdefault("worker_init_fn", freeze_inherited_objects)
        return DataLoader(
            dataset,
            num_workers=workers,
            pin_memory=d.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        d = self.cfg.data
        if self.streaming:
            return self._stream_loader(self.train_set)
        drop_last = len(self.train_set) > d.batch_size  # no size-1 batch into batch norm
        if d.paired:
            sampler = PairedBatchSampler(self.train_set.labels, self.train_set.pairs(), d.batch_size,
                                         d.samples_per_epoch, seed=self.cfg.trainer.seed)
            return self._loader(self.train_set, None, batch_sampler=sampler)
        weights = self.train_set.sample_weights(d.balanced) if hasattr(self.train_set, "sample_weights") else None
        if weights is not None:  # mix: pseudo-fakes get their `ratio` share of the fake draws
            sampler = WeightedRandomSampler(weights, d.samples_per_epoch or len(weights), replacement=True)
            return self._loader(self.train_set, d.batch_size, sampler=sampler, drop_last=drop_last)
        if d.balanced:
            sampler = balanced_sampler(self.train_set.labels, d.samples_per_epoch)
            return self._loader(self.train_set, d.batch_size, sampler=sampler, drop_last=drop_last)
        return self._loader(self.train_set, d.batch_size, shuffle=True, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        d = self.cfg.data
        if self.streaming:
            return self._stream_loader(self.val_set)
        return self._loader(self.val_set, d.val_batch_size or d.batch_size, shuffle=False)


def freeze_inherited_objects(worker_id: int) -> None:
    """A DataLoader worker inherits the trainer's ~400k Python objects (torch, Lightning); a full
    garbage collection scans them all (~25 ms) and is triggered by the worker's own allocations
    (every cache entry's metadata). Frozen, they are never scanned (the loader benchmark: 3-20% faster)."""
    import gc

    gc.freeze()
