"""BG, background/lighting: is the face lit and coloured like its surroundings?

View: the tight face crop (backbone) and a context crop twice the face box, both image_size.
Module: four analyzers, each reading the face and its context side by side (8 channels each):
illumination gradients (luminance, 3x3), colour temperature (log-chromaticity, 5x5), shading
direction (low-passed luminance, 9x9) and noise level (high-pass energy, 7x7) -> 32 x 7 x 7.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfpanel.models.specialists.base import register_specialist
from dfpanel.models.specialists.common import PanelSpecialist, branch
from dfpanel.views.ops import context_crop, face_crop

EPS = 1.0 / 255.0


def _luma(x: torch.Tensor) -> torch.Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _log_chroma(x: torch.Tensor) -> torch.Tensor:
    """log(R/G), log(B/G): colour of the light, independent of its brightness."""
    g = x[:, 1:2] + EPS
    return torch.cat([torch.log((x[:, 0:1] + EPS) / g), torch.log((x[:, 2:3] + EPS) / g)], dim=1)


class LightingModule(nn.Module):
    def __init__(self, per_branch: int = 8):
        super().__init__()
        self.illumination = branch(2, per_branch, kernel=3, stride=2, downsample=3)
        self.colour = branch(4, per_branch, kernel=5, stride=2, downsample=3)
        self.shading = branch(2, per_branch, kernel=9, stride=1, downsample=3)
        self.noise = branch(2, per_branch, kernel=7, stride=2, downsample=3)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        face, context = inputs["face"], inputs["context"]
        luma = torch.cat([_luma(face), _luma(context)], dim=1)
        chroma = torch.cat([_log_chroma(face), _log_chroma(context)], dim=1)
        low = F.avg_pool2d(luma, 4)  # shading lives in the low frequencies
        high = (luma - F.avg_pool2d(luma, 3, stride=1, padding=1, count_include_pad=False)).abs()
        return torch.cat([self.illumination(luma), self.colour(chroma), self.shading(low), self.noise(high)], dim=1)


@register_specialist
class BGSpecialist(PanelSpecialist):
    name = "bg"
    # Self-blends that differ in light and colour, not in resampling or sharpness (RR's traces): BG must
    # learn that the face is lit unlike its surroundings, not that it is blurrier.
    pseudofakes = ({"name": "self_blend", "relight_p": 0.7, "resample_p": 0.1, "frequency_p": 0.2},)
    mask_input = "face"
    order = 0
    title = "Background and lighting"
    color = "#1f77b4"
    looks_for = "the face is lit or coloured unlike its surroundings"
    sample_kind = "frame"
    module_channels = 32
    extra_config = {"face_scale": 1.3, "context_scale": 2.0}

    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:
        pos = positions[0]
        size = cfg["image_size"]
        return {
            "face": face_crop(entry, pos, size, cfg["face_scale"]),
            "context": context_crop(entry, pos, size, cfg["context_scale"]),
        }

    @staticmethod
    def input_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
        s = cfg["image_size"]
        return {"face": (3, s, s), "context": (3, s, s)}

    def build_module(self, cfg: dict) -> nn.Module:
        return LightingModule(self.module_channels // 4)
