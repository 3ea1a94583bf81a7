"""A chunked stage (DFDC) on a disk budget (`--max-cache-gb`): extract a chunk, train on it, drop its cache.

DFDC does not fit on a small disk (a Kaggle session has ~20 GB). With a budget, the chunked stage
(`dfpanel.train.chunks`) reads videos from the stage's manifest instead of a ready cache: before a
chunk trains, its videos (the rows training would pick: train and val splits of that chunk, the same
`select_rows` choice) are extracted with `dfpanel.extract.run.run_extraction` into
RUN_DIR/chunk_K/cache; the chunk trains on that cache and validates on the chunk's own val videos
(the other chunks are not on disk); once the chunk is recorded as done, its cache is deleted.

Extraction runs in batches (a tenth of the chunk each): after each, the cache's size on disk is
measured and projected to the whole chunk, and a chunk that would not fit is refused in one line with
its size; the time limit is checked between batches. progress.json records how far each chunk's
extraction went, so a re-run goes on with the next batch, and skips chunks that are done.

`chunk_order: auto` needs each chunk's loss under the incoming weights: a few training videos per
chunk (enough for `chunk_sample` samples) are extracted into RUN_DIR/probe_cache, scored, and deleted.

Input settings: the chunks are extracted with the InputSpec of the `--data` cache when one is given
(the cache of the earlier stages), else with the one the incoming weights were trained with (their
sidecar), else with the defaults: the views then match what the weights learned.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dfpanel.errors import ConfigError, DataError
from dfpanel.train.config import StageConfig
from dfpanel.train.limits import TimeLimit, TimeLimitReached

log = logging.getLogger(__name__)

GB = 1e9
CACHE_DIR = "cache"  # RUN_DIR/chunk_K/cache
PROBE_DIR = "probe_cache"  # RUN_DIR/probe_cache, while `chunk_order: auto` scores the chunks
BATCHES = 10  # extraction batches per chunk: the size and the time limit are checked after each


@dataclass(frozen=True)
class ChunkBudget:
    """`--max-cache-gb` and how to extract (`--extract-workers`, `--extract-device`)."""

    max_gb: float
    workers: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not (isinstance(self.max_gb, (int, float)) and self.max_gb > 0):
            raise ConfigError(f"--max-cache-gb {self.max_gb!r}: must be a positive number of GB (10^9 bytes)")
        if self.workers < 1:
            raise ConfigError(f"--extract-workers {self.workers}: must be at least 1")

    @property
    def max_bytes(self) -> float:
        return self.max_gb * GB


def check_budget_config(cfg: StageConfig) -> None:
    """One-line ConfigErrors for a stage that cannot train chunk by chunk from its manifest."""
    src = cfg.source or "<config>"
    if not cfg.data.chunked:
        raise ConfigError(f"--max-cache-gb: {src} is not a chunked stage (data.chunked: false); "
                          "the disk budget is for the DFDC stage")
    if not cfg.data.manifest:
        raise ConfigError("--max-cache-gb extracts each chunk from the stage's manifest: pass the DFDC manifest "
                          "(train: --manifest; curriculum: --manifest-dfdc or --manifests)")
    t = cfg.trainer
    many = (isinstance(t.devices, int) and t.devices > 1) or (isinstance(t.devices, list) and len(t.devices) > 1)
    if many or t.num_nodes > 1:
        raise ConfigError("--max-cache-gb trains on one device (it extracts between chunks); drop --devices/--num-nodes")


def budget_config(cfg: StageConfig) -> StageConfig:
    """`cfg` checked for a budgeted run, with `trainer.devices: auto` pinned to one device."""
    check_budget_config(cfg)
    if cfg.trainer.devices == "auto":
        cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, devices=1))
    return cfg


def disk_usage(path: Path) -> int:
    """Bytes a folder takes on disk (allocated blocks where the file system says, else file sizes)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            blocks = getattr(st, "st_blocks", None)
            total += blocks * 512 if blocks is not None else st.st_size
    return total


def gb(n: float) -> str:
    """A size in GB (10^9 bytes), or in MB below 0.1 GB."""
    return f"{n / GB:.2f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def drop_cache(path: Path) -> None:
    """Delete a chunk's (or the probe's) cache folder, saying how much it freed."""
    if path.is_dir():
        size = disk_usage(path)
        shutil.rmtree(path)
        log.info("%s: dropped (%s freed)", path, gb(size))


class ChunkExtraction:
    """Extracts a chunked stage's videos one chunk at a time into caches that fit `budget`."""

    def __init__(self, cfg: StageConfig, budget: ChunkBudget, *, incoming: Path | None = None, progress: bool = True):
        from dfpanel.extract.video import ExtractConfig
        from dfpanel.index.manifest import read_manifest

        check_budget_config(cfg)
        self.cfg = cfg
        self.budget = budget
        self.progress = progress
        self.records = read_manifest(cfg.data.manifest)
        self.extract = ExtractConfig(self._spec(incoming), device=budget.device)

    def _spec(self, incoming: Path | None):
        from dfpanel.extract.cache import FaceTrackCache
        from dfpanel.extract.spec import DEFAULT_SPEC

        if self.cfg.data.cache:
            return FaceTrackCache(self.cfg.data.cache).input_spec
        if incoming is not None:
            from dfpanel.weights.folder import sidecar_input_spec
            from dfpanel.weights.sidecar import read_sidecar

            return sidecar_input_spec(read_sidecar(incoming, missing_ok=True), incoming)
        log.warning("--max-cache-gb: no --data cache and no incoming weights to take input settings from; "
                    "extracting the chunks with the defaults (%s)", DEFAULT_SPEC.extract_args())
        return DEFAULT_SPEC

    # -- which videos --------------------------------------------------------------------------
    def _select(self, split: str, chunk: int, max_videos: int | None):
        from dfpanel.views.samples import select_rows

        d = self.cfg.data
        return select_rows(self.records, split=split, dataset=d.dataset, chunks=[chunk], max_videos=max_videos,
                           seed=self.cfg.trainer.seed)

    def available_chunks(self) -> list[int]:
        d = self.cfg.data
        return sorted({r.chunk for r in self.records if r.chunk is not None and r.split == d.train_split
                       and (d.dataset is None or r.dataset == d.dataset)})

    def chunk_videos(self, chunk: int) -> list:
        """The videos chunk `chunk` trains and validates on (what the DataModule will pick from its cache)."""
        d = self.cfg.data
        train = self._select(d.train_split, chunk, d.max_videos)
        val = self._select(d.val_split, chunk, d.max_videos)
        if not train or not val:
            what = d.train_split if not train else d.val_split
            raise DataError(f"{self.cfg.data.manifest}: chunk {chunk} has no {what!r} videos; with --max-cache-gb "
                            "each chunk trains and validates on its own videos")
        return train + val

    def probe_videos(self, chunks: Sequence[int]) -> list:
        """A few training videos per chunk, enough for `chunk_sample` samples (`chunk_order: auto`)."""
        d = self.cfg.data
        per_video = d.frames_per_video or self.extract.spec.frames
        k = max(2, math.ceil(d.chunk_sample / max(1, per_video)))
        picked = []
        for chunk in chunks:
            rows = self._select(d.train_split, chunk, None)
            picked += random.Random(self.cfg.trainer.seed + chunk).sample(rows, min(k, len(rows)))
        return picked

    # -- extraction ----------------------------------------------------------------------------
    def extract_into(self, records: list, cache: Path, what: str, *, start: int = 0,
                     time_limit: TimeLimit | None = None, on_batch: Callable[[int], None] | None = None) -> Path:
        """Extract `records` into `cache` in batches, from record `start` on (what an earlier run did).
        After each batch: DataError when the cache, projected to all of `records`, passes the budget;
        `on_batch(n_done)`; TimeLimitReached when the time limit ran out."""
        from dfpanel.extract.cache import INDEX_FILE
        from dfpanel.extract.run import run_extraction
        from dfpanel.index.manifest import write_manifest

        n = len(records)
        if start >= n and (cache / INDEX_FILE).is_file():
            return cache
        start = start if cache.is_dir() else 0
        step = max(1, math.ceil(n / BATCHES))
        log.info("%s: extracting %d videos into %s (--max-cache-gb %g)", what, n - start, cache, self.budget.max_gb)
        cache.parent.mkdir(parents=True, exist_ok=True)
        batch_manifest = cache.parent / f".{cache.name}.batch.jsonl"
        for lo in range(start, n, step):
            if time_limit is not None and time_limit.expired():
                raise TimeLimitReached(f"{what}: the time limit ({time_limit.text}) ran out while extracting its videos "
                                       f"({lo} of {n} done, in {cache}), not finished", run_dir=cache.parent)
            write_manifest(records[lo:lo + step], batch_manifest)
            run_extraction(batch_manifest, cache, self.extract, workers=self.budget.workers, progress=self.progress)
            done = min(lo + step, n)
            used = disk_usage(cache)
            projected = used / done * n
            if used > self.budget.max_bytes or projected > self.budget.max_bytes:
                raise DataError(
                    f"{what} does not fit --max-cache-gb {self.budget.max_gb:g}: its cache takes about {gb(projected)} "
                    f"({gb(used)} for {done} of {n} videos); index DFDC into more chunks (dfpanel index --dfdc-chunks N) "
                    "or raise --max-cache-gb")
            if on_batch is not None:
                on_batch(done)
        batch_manifest.unlink(missing_ok=True)
        log.info("%s: %s in %s", what, gb(disk_usage(cache)), cache)
        return cache
