"""Stand-ins for detection tests: tiny specialists with known outputs and an in-memory extraction,
so the pipeline's own logic (abstention, aggregation, panel, report) is tested on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from factories import extracted_track
from torch import nn

from dfpanel.errors import NoFaceError
from dfpanel.inference.runners import TorchRunner
from dfpanel.models.specialists.base import Specialist, SpecialistOutput


class FakeSpecialist(Specialist):
    """logit = bias + gain * (mean brightness of the sample's crops - 0.5): known, content-dependent."""

    def __init__(self, name: str, kind: str = "frame", bias: float = 0.0, gain: float = 4.0, needs_audio: bool = False,
                 clip_len: int = 4, title: str | None = None):
        super().__init__()
        self.name, self.sample_kind, self.needs_audio = name, kind, needs_audio
        self.title = title or f"Fake {name.upper()}"
        self.config = {"clip_len": clip_len}
        self.lin = nn.Linear(1, 1)
        with torch.no_grad():
            self.lin.weight.fill_(gain)
            self.lin.bias.fill_(bias - gain * 0.5)

    def view(self, entry, positions):
        crops = np.stack([entry.crop(p) for p in positions]).astype(np.float32) / 255.0
        return {"x": torch.tensor([crops.mean()], dtype=torch.float32)}

    def input_names(self):
        return ["x"]

    def forward(self, inputs):
        z = self.lin(inputs["x"]).reshape(-1)
        return SpecialistOutput(logit=z, aux_logit=z, info={})


def fake_runners(**biases) -> list[TorchRunner]:
    """Default panel: bg (frame, real-leaning), cm (frame, fake-leaning), av (clip, needs audio), tm (clip)."""
    b = {"bg": -2.0, "cm": 3.0, "av": 1.0, "tm": 0.5} | biases
    specs = [
        FakeSpecialist("bg", "frame", b["bg"], title="Background lighting"),
        FakeSpecialist("cm", "frame", b["cm"], title="Compression history"),
        FakeSpecialist("av", "clip", b["av"], needs_audio=True, title="Lip sync"),
        FakeSpecialist("tm", "clip", b["tm"], title="Temporal consistency"),
    ]
    return [TorchRunner(s, weights_id=f"sha-{s.name}", weights_info={"file": f"{s.name}.safetensors"}) for s in specs]


def fake_extract(path: Path, video_id: str, timings: dict, progress=None) -> list:
    """By file name: 'noface' -> NoFaceError, 'silent' -> no audio track, anything else -> audio."""
    name = Path(path).name
    if "noface" in name:
        raise NoFaceError(f"{path}: no face found in 8 frames checked")
    timings["decode"], timings["faces"] = 0.01, 0.02
    return [extracted_track(audio="silent" not in name)]
