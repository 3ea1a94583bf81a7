"""Training samples with pseudo-fakes: real samples given a fake's trace on the fly (dfpanel.pseudofakes).

`PseudoFakeDataset` wraps the cache dataset of one split. Its items are the base items (mode `mix`; in
mode `only` the base holds real videos alone) followed by pseudo items, each the twin of one real base
item: the same frames, a generator's trace applied, label 1. A pseudo item is made in `__getitem__`
from the real sample's entry, then augmented like any sample (the blend mask moves with geometric
transforms), then cut by the specialist's own view: the one code path detection uses.

Determinism: a pseudo item's draws come from `np.random.default_rng([seed, index, epoch_draw])`;
`epoch_draw` is 0 for validation (the same pseudo-fakes every epoch, so val AUC is comparable) and a
draw from numpy's global generator for training (seeded per worker by Lightning's seed_everything), so
a run is reproducible from its seed while every epoch sees new pseudo-fakes.

A pseudo item's meta `video` is `twin_video(row)`: its own video number for video-level validation.
Every item's meta gains `pair` (the base index of the real it pairs with, -1 none: the paired sampler
uses it), `mask` (1, G, G) blend-mask target on the mask input's view and `mask_weight` (1: the target
is known, a pseudo-fake's mask or a real's zeros; 0: a dataset fake, whose mask nobody recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dfpanel.errors import ConfigError
from dfpanel.extract.cache import EditedEntry
from dfpanel.pseudofakes.base import PseudoFakeGenerator, create_pseudofake
from dfpanel.views.samples import CacheSampleDataset

log = logging.getLogger(__name__)

MASK_GRID = 7  # the token grid every backbone map is pooled to (dfpanel.models.backbone.GRID)


def build_generators(specs: Sequence[dict], defaults: Sequence[str | dict]) -> list[tuple[PseudoFakeGenerator, float]]:
    """(generator, weight) pairs from `pseudofakes.generators`, or the specialist's own defaults
    (`Specialist.pseudofakes`: names or {name, options})."""
    if not specs:
        specs = [{"name": d} if isinstance(d, str) else dict(d) for d in defaults]
    if not specs:
        raise ConfigError("no pseudo-fake generators: list some under pseudofakes.generators")
    out = []
    for spec in specs:
        spec = dict(spec)
        name, weight = spec.pop("name"), float(spec.pop("weight", 1.0))
        out.append((create_pseudofake(name, **spec), weight))
    return out


def pseudo_sources(base: CacheSampleDataset, mode: str) -> list[int]:
    """Base indices of the real samples that get a pseudo twin: every real sample (`only` and `mix`;
    how often `mix` draws them against the dataset's own fakes is the sampler's `ratio`)."""
    if mode == "off":
        return []
    return [i for i, label in enumerate(base.labels) if label == 0]


def mix_weights(labels: Sequence[int], is_pseudo: Sequence[bool], ratio: float, balanced: bool) -> list[float]:
    """Per-item sampling weights for `mix`: of the fakes drawn, a `ratio` share are pseudo-fakes and the
    rest the dataset's own fakes, whatever their counts (a large dataset's fakes would otherwise drown
    the pseudo-fakes, and with them the trace they teach). Reals get half the draws when `balanced`,
    else their share of the dataset's own samples."""
    n_real = sum(1 for y, p in zip(labels, is_pseudo) if y == 0)
    n_fake = sum(1 for y, p in zip(labels, is_pseudo) if y == 1 and not p)
    n_pseudo = sum(1 for p in is_pseudo if p)
    real_share = 0.5 if balanced or not (n_real + n_fake) else n_real / (n_real + n_fake)
    pseudo_share = (1 - real_share) * (ratio if n_fake else 1.0)
    fake_share = 1 - real_share - pseudo_share
    out = []
    for y, p in zip(labels, is_pseudo):
        if p:
            out.append(pseudo_share / n_pseudo)
        elif y == 1:
            out.append(fake_share / n_fake)
        else:
            out.append(real_share / max(n_real, 1))
    return out


class PseudoFakeDataset(Dataset):
    def __init__(
        self,
        base: CacheSampleDataset,
        generators: Sequence[tuple[PseudoFakeGenerator, float]],
        *,
        mode: str,
        ratio: float = 0.5,
        seed: int = 0,
        train: bool = True,
        mask_input: str | None = None,
        pair_of: Callable[[int], list[int]] | None = None,
    ):
        self.base = base
        self.generators = list(generators)
        weights = np.array([w for _, w in self.generators], dtype=np.float64)
        self.probs = weights / weights.sum()
        self.seed, self.train, self.mask_input = int(seed), bool(train), mask_input
        self.mode, self.ratio = mode, float(ratio)
        self.sources = pseudo_sources(base, mode)
        self.labels: list[int] = list(base.labels) + [1] * len(self.sources)
        self.rows = base.rows
        self.items = base.items + [base.items[i] for i in self.sources]
        self._pair_of = pair_of
        # Donor candidates for AV's voice replacement, listed once rather than per pseudo item.
        self._real_videos = [v for v, row in enumerate(base.rows) if row.label == 0]

    def __len__(self) -> int:
        return len(self.base) + len(self.sources)

    def is_pseudo(self, index: int) -> bool:
        return index >= len(self.base)

    def twin_video(self, video: int) -> int:
        """The video number a pseudo twin of base row `video` reports (past every real row number)."""
        return len(self.base.rows) + video

    def sample_weights(self, balanced: bool) -> list[float] | None:
        """The sampler's per-item weights for `mix` (see `mix_weights`); None for other modes."""
        if self.mode != "mix" or not self.sources:
            return None
        return mix_weights(self.labels, [self.is_pseudo(i) for i in range(len(self))], self.ratio, balanced)

    def pairs(self) -> list[list[int]]:
        """Per item, the indices of the real items it pairs with (a fake's source real's samples, a
        pseudo-fake's own real); [] for reals and unpaired fakes."""
        out: list[list[int]] = [[] for _ in range(len(self))]
        if self._pair_of is not None:
            for i in range(len(self.base)):
                if self.base.labels[i] == 1:
                    out[i] = self._pair_of(i)
        for j, src in enumerate(self.sources):
            out[len(self.base) + j] = [src]
        return out

    def _rng(self, index: int) -> np.random.Generator:
        draw = int(np.random.randint(0, 2**31 - 1)) if self.train else 0
        return np.random.default_rng([self.seed, index, draw])

    def _donor(self, exclude_video: int):
        """Another real video's entry (AV's audio replacement), drawn with the generator's rng."""

        def donor(rng: np.random.Generator):
            others = [v for v in self._real_videos if v != exclude_video]
            if not others:
                return None
            return self.base.entry(int(others[int(rng.integers(len(others)))]))

        return donor

    def __getitem__(self, index: int):
        if not self.is_pseudo(index):
            inputs, label, meta = self._base_item(index)
            return inputs, label, meta
        src = self.sources[index - len(self.base)]
        video, k = self.base.items[src]
        entry = self.base.entry(video)
        positions = self.base._positions(entry, k)
        rng = self._rng(index)
        order = rng.permutation(len(self.generators)) if len(self.generators) > 1 else [0]
        order = sorted(order, key=lambda g: -self.probs[g] * rng.random())  # weighted draw, then fallbacks
        made = None
        for g in order:
            gen = self.generators[int(g)][0]
            if gen.applies(entry, positions):
                made = gen(entry, positions, rng, self._donor(video))
                break
        meta = self.base.sample_meta(index, video, entry, positions)
        # The twin is a video of its own for the video-level monitor: sharing its real's number would
        # give that "video" both labels, and val AUC would be undefined (NaN) in every pseudo-fake run.
        meta["video"] = self.twin_video(video)
        if made is None:  # no generator can carry its trace here (AV: a clip without speech): no evidence
            meta.update(gate="no pseudo-fake generator applies", weight=0.0)
            edited, masks = entry, None
        else:
            meta.update(gate="", weight=1.0)  # the pseudo-fake made it carry evidence (gates judge the real sample)
            edited, masks = made.entry, made.masks
        edited, masks = self._augment(edited, positions, masks)
        inputs = self.base.view(edited, positions)
        meta.update(pair=src, **self._mask_target(edited, positions, masks, known=made is not None))
        return inputs, torch.tensor(1.0), meta

    def _base_item(self, index: int):
        base = self.base
        video, k = base.items[index]
        entry = base.entry(video)
        positions = base._positions(entry, k)
        edited, _ = self._augment(entry, positions, None)
        inputs = base.view(edited, positions)
        label = base.rows[video].label
        meta = base.sample_meta(index, video, entry, positions)
        meta.update(pair=-1, **self._mask_target(edited, positions, None, known=label == 0))
        return inputs, torch.tensor(float(label)), meta

    def _augment(self, entry, positions, masks):
        aug = self.base.augment
        if aug is None:
            return entry, masks
        seed = int(np.random.randint(0, 2**31 - 1))
        return aug(entry, positions, seed, masks=masks) if masks is not None else (aug(entry, positions, seed), None)

    def _mask_target(self, entry, positions, masks, *, known: bool) -> dict:
        if self.mask_input is None:
            return {}
        target = torch.zeros(1, MASK_GRID, MASK_GRID)
        if masks:
            crops = {p: np.repeat((np.clip(masks[p], 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)
                     for p in positions if p in masks}
            mask_view = self.base.view(EditedEntry(entry, crops=crops), positions)[self.mask_input]
            m = mask_view.float()
            while m.dim() > 3:  # (T, 3, H, W) clips: the mean over time
                m = m.mean(dim=0)
            target = F.adaptive_avg_pool2d(m.mean(dim=0, keepdim=True)[None], MASK_GRID)[0]
        return {"mask": target, "mask_weight": 1.0 if known else 0.0}
