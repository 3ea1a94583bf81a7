"""A look at what the pseudo-fake generators make from a cache's real videos (`dfpanel pseudofakes preview`).

For each generator and each chosen real video (label 0): one sample (a frame, or a clip for the clip
generators, one that the generator applies to), its pseudo-fake, and written to
OUT/<generator>/<dataset>__<video_id>/:
    preview.png        a row per frame position: original | pseudo-fake | mask (black: none)
    original.wav, pseudofake.wav   when the generator changed the audio
and OUT/index.json listing every sample's files and the generator's draws (`details`).
Everything is drawn from `seed`: the same call writes the same files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from dfpanel.atomic import atomic_write
from dfpanel.errors import DataError
from dfpanel.extract.cache import FaceTrackCache, FaceTrackEntry, write_wav
from dfpanel.pseudofakes.base import (
    PseudoFake,
    create_pseudofake,
    list_pseudofakes,
    pseudofake_class,
)

GAP = 4  # pixels between the panels of a row


def _mask_rgb(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.zeros((*shape, 3), np.uint8)
    return np.repeat(np.clip(np.rint(mask * 255), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def preview_image(entry: FaceTrackEntry, fake: PseudoFake, positions: list[int]) -> np.ndarray:
    """original | pseudo-fake | mask, a row per position, on a white background (uint8 RGB)."""
    rows = []
    for pos in positions:
        orig = entry.crop(pos)
        rows.append([orig, fake.entry.crop(pos), _mask_rgb((fake.masks or {}).get(pos), orig.shape[:2])])
    cell_h = max(p.shape[0] for row in rows for p in row)
    cell_w = max(p.shape[1] for row in rows for p in row)
    out = np.full((len(rows) * (cell_h + GAP) - GAP, 3 * (cell_w + GAP) - GAP, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            y, x = r * (cell_h + GAP), c * (cell_w + GAP)
            out[y : y + panel.shape[0], x : x + panel.shape[1]] = panel
    return out


def _sample_positions(gen, entry: FaceTrackEntry, rng: np.random.Generator) -> list[int] | None:
    """A frame (frame generators) or a clip the generator applies to; None when no clip qualifies."""
    clips = [entry.clips()[c] for c in sorted(entry.clips())]
    start = int(rng.integers(len(clips)))
    for clip in clips[start:] + clips[:start]:
        positions = [clip[len(clip) // 2]] if getattr(gen, "sample_kind", "frame") == "frame" else list(clip)
        if gen.applies(entry, positions):
            return positions
    return None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def preview_pseudofakes(cache_root: str | os.PathLike, out: str | os.PathLike, generators: list[str] | None = None,
                        videos: int = 2, seed: int = 0) -> dict:
    """Write the preview files for `videos` real videos of the cache per generator (default: all
    registered); returns the index also written to OUT/index.json."""
    from PIL import Image

    cache = FaceTrackCache(cache_root)
    names = list(dict.fromkeys(generators)) if generators else list_pseudofakes()
    for name in names:
        pseudofake_class(name)  # an unknown name fails before anything is written
    if videos < 1:
        raise DataError(f"--videos must be at least 1, got {videos}")
    reals = sorted((r for r in cache.rows() if r.label == 0), key=lambda r: (r.dataset, r.id))
    if not reals:
        raise DataError(f"{cache.root}: the cache holds no real videos (label 0); pseudo-fakes are made from reals")
    pick = np.random.default_rng([seed, 0]).choice(len(reals), size=min(videos, len(reals)), replace=False)
    chosen = [reals[i] for i in sorted(pick.tolist())]

    def donor_for(row):
        others = [r for r in reals if r.has_audio and (r.dataset, r.id) != (row.dataset, row.id)]

        def donor(rng: np.random.Generator):
            return cache.entry(others[int(rng.integers(len(others)))]) if others else None

        return donor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for g, name in enumerate(names):
        gen = create_pseudofake(name)
        for v, row in enumerate(chosen):
            entry = cache.entry(row)
            rng = np.random.default_rng([seed, g, v])
            record = {"generator": name, "dataset": row.dataset, "video": row.id}
            positions = _sample_positions(gen, entry, rng)
            if positions is None:
                samples.append({**record, "skipped": f"no sample of this video that {name} applies to"})
                continue
            fake = gen(entry, positions, rng, donor_for(row))
            folder = out / _safe(name) / _safe(f"{row.dataset}__{row.id}")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(preview_image(entry, fake, positions)).save(folder / "preview.png")
            files = [folder / "preview.png"]
            new_audio = fake.entry.audio
            if entry.has_audio and new_audio is not None and not np.array_equal(new_audio, entry.audio):
                sr = entry.meta.audio.sample_rate
                write_wav(folder / "original.wav", entry.audio, sr)
                write_wav(folder / "pseudofake.wav", new_audio, sr)
                files += [folder / "original.wav", folder / "pseudofake.wav"]
            samples.append({**record, "positions": positions, "files": [f.relative_to(out).as_posix() for f in files],
                            "details": fake.details})
    index = {"cache": str(cache.root), "seed": seed, "generators": names, "samples": samples}
    atomic_write(out / "index.json", json.dumps(index, indent=1))
    return index
