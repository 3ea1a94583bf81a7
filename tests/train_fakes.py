"""Test doubles for the training tests: a tiny learnable specialist and a small synthetic cache.

The cache's fake videos have brighter crops than the real ones (a signal a 2-layer net learns in a
few steps); `invert_chunks` flips that signal in some DFDC chunks, making them "hard" for weights that
learned it. Crops are small (24 px) and few, so a whole training run takes seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dfpanel.extract.cache import (
    CacheIndexRow,
    EntryWriter,
    FrameRecord,
    TrackMeta,
    append_index_row,
)
from dfpanel.models.specialists.base import (
    Specialist,
    SpecialistOutput,
    register_specialist,
)

CROP = 24


class _Fake(Specialist):
    def __init__(self, width: int = 8, clip_len: int = 4, **_ignored):
        super().__init__()
        self._config = {"width": width, "clip_len": clip_len}
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, 1)
        self.aux = nn.Linear(width, 1)

    @property
    def config(self) -> dict:
        return dict(self._config)

    def view(self, entry, positions):
        crops = [torch.from_numpy(np.asarray(entry.crop(p), dtype=np.float32) / 255.0).permute(2, 0, 1) for p in positions]
        # the face box (moved by augmentation) must stay inside the crop
        f = entry.meta.frames[positions[0]]
        assert f.box[0] >= f.crop_box[0] - 1e-3 and f.box[2] <= f.crop_box[2] + 1e-3
        return {"image": torch.stack(crops).mean(0)[:, :16, :16].contiguous()}

    def input_names(self):
        return ["image"]

    def forward(self, inputs):
        h = self.body(inputs["image"] - 0.5)
        return SpecialistOutput(logit=self.head(h).squeeze(1), aux_logit=self.aux(h).squeeze(1))


@register_specialist
class FakeFrameSpecialist(_Fake):
    name = "fakeframe"
    sample_kind = "frame"


@register_specialist
class FakeClipSpecialist(_Fake):
    name = "fakeclip"
    sample_kind = "clip"


def make_cache(
    root: Path,
    *,
    dataset: str = "ffpp",
    counts: dict[str, tuple[int, int]] | None = None,  # split -> (reals, fakes)
    n_frames: int = 8,
    clip_len: int = 4,
    chunks: int | None = None,
    invert_chunks: tuple[int, ...] = (),
    seed: int = 0,
) -> Path:
    """A face-track cache of tiny synthetic entries; returns root."""
    counts = counts or {"train": (6, 6), "val": (3, 3)}
    rng = np.random.default_rng(seed + hash(dataset) % 1000)
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.jsonl").touch()
    n = 0
    for split, (reals, fakes) in counts.items():
        for label, how_many in ((0, reals), (1, fakes)):
            for i in range(how_many):
                chunk = (n % chunks) if chunks else None
                vid = f"{dataset}_{split}_{label}_{i}"
                signal = label if chunk not in invert_chunks else 1 - label
                _write_entry(root, dataset, vid, signal, n_frames, clip_len, rng)
                append_index_row(
                    root,
                    CacheIndexRow(
                        id=vid, dataset=dataset, dir=f"{dataset}/{vid}", label=label,
                        fake_type="real" if label == 0 else "Deepfakes", split=split, group=vid,
                        has_audio=False, chunk=chunk, n_frames=n_frames, n_clips=n_frames // clip_len,
                    ),
                )
                n += 1
    return root


def _write_entry(root, dataset, vid, bright, n_frames, clip_len, rng) -> None:
    writer = EntryWriter(root, dataset, vid)
    frames = []
    ox, oy = 100, 60
    for pos in range(n_frames):
        base = 70 + 90 * bright
        img = np.clip(rng.normal(base, 25, size=(CROP, CROP, 3)), 0, 255).astype(np.uint8)
        rel = writer.add_crop(pos, img)
        frames.append(
            FrameRecord(
                index=pos, time=pos / 25.0, clip=pos // clip_len, box=[ox + 6, oy + 6, ox + 18, oy + 18],
                crop_box=[ox, oy, ox + CROP, oy + CROP], landmarks=[[ox + 9, oy + 9], [ox + 15, oy + 9],
                [ox + 12, oy + 12], [ox + 10, oy + 15], [ox + 14, oy + 15]], score=0.99, file=rel,
            )
        )
    meta = TrackMeta(
        video_id=vid, dataset=dataset, source=f"/videos/{vid}.mp4", source_size=[320, 240], fps=25.0,
        duration=n_frames / 25.0, codec="h264", rotation=0, clip_len=clip_len, frames=frames, audio=None,
    )
    writer.commit(meta)


def tiny_config(cache: Path, specialist: str = "fakeframe", *extra: str):
    """A StageConfig that trains a fake specialist on `cache` in a few seconds."""
    from dfpanel.train.config import load_stage_config

    return load_stage_config(
        "cm/tiny_ffpp",
        [
            f"model.specialist={specialist}",
            "model.backbone=null", "model.pretrained=null", "model.image_size=null", "model.dropout=null",
            f"data.cache={cache}",
            "data.dataset=null",
            "data.max_videos=null",
            "data.frames_per_video=null",
            "data.val_frames_per_video=null",
            "data.batch_size=8",
            "optim.lr=0.05",
            "trainer.max_epochs=3",
            "trainer.log_every_n_steps=1",
            *extra,
        ],
    )

