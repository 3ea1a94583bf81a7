"""Test doubles for the training tests: a tiny learnable specialist and a stage config that trains it.

They learn the brightness signal of factories.cache_on_disk (fakes brighter) in a few steps; crops are
small (24 px) and few, so a whole training run takes seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dfpanel.models.specialists.base import (
    Specialist,
    SpecialistOutput,
    register_specialist,
)


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

