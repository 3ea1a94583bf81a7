"""Batch samplers for training: class-balanced draws (views.samples.balanced_sampler) and paired batches.

A paired batch puts each fake next to a sample of the real video it was made from (FF++'s target
video, DFDC's `original`, a Celeb-DF identity's real clip: the cache row's dataset + group; a
pseudo-fake's own real sample). With identity, scene and camera the same on both sides, the only thing
that tells them apart is the manipulation: the shortcut-free contrast GenD and SBI train on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class PairedBatchSampler(Sampler[list[int]]):
    """Batches of (fake, its paired real) pairs; a fake without a recorded pair gets a random real.

    `labels`: per item 0/1; `pairs`: per item the indices of the real items it pairs with. Fakes are
    drawn uniformly with replacement, so a batch is half fakes, half their reals (odd batch sizes add one
    random real). Under DDP every rank takes every world-th batch of one seeded sequence: no duplicates.
    """

    def __init__(self, labels: Sequence[int], pairs: Sequence[Sequence[int]], batch_size: int,
                 num_samples: int | None = None, seed: int = 0):
        if batch_size < 2:
            raise ValueError("paired batches need batch_size >= 2")
        self.fakes = np.array([i for i, y in enumerate(labels) if int(y) == 1])
        self.reals = np.array([i for i, y in enumerate(labels) if int(y) == 0])
        if len(self.fakes) == 0 or len(self.reals) == 0:
            raise ValueError("paired batches need both real and fake samples")
        self.pairs = [list(p) for p in pairs]
        self.batch_size, self.seed, self.epoch = batch_size, int(seed), 0
        self.num_samples = int(num_samples or len(labels))
        self.n_paired = sum(1 for i in self.fakes if self.pairs[i])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        _, world = _rank_world()
        return max(1, math.ceil(self.num_samples / self.batch_size / world))

    def batches(self, n: int, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch, 0xBA7C])
        half, odd = divmod(self.batch_size, 2)
        out = []
        for _ in range(n):
            batch = []
            for f in rng.choice(self.fakes, size=half):
                partners = self.pairs[int(f)]
                real = partners[int(rng.integers(len(partners)))] if partners else int(rng.choice(self.reals))
                batch += [int(f), int(real)]
            if odd:
                batch.append(int(rng.choice(self.reals)))
            out.append(batch)
        return out

    def __iter__(self):
        rank, world = _rank_world()
        n = len(self)
        epoch = self.epoch
        self.epoch += 1  # Lightning calls set_epoch when it can; otherwise each pass is the next epoch
        yield from self.batches(n * world, epoch)[rank::world]
