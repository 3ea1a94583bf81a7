"""RR, resampling: traces left by resizing or warping a generated face into the frame.

View: the resized face crop for the backbone; SRM high-pass residuals and the log-magnitude spectrum
of the main residual, both over an rr_size window of NATIVE pixels centred on the face. (Resizing
the crop first would write our own resampling traces into the very signal RR looks for; the
spectrum is taken of the residual because interpolation's periodic correlations show there.)
Module (8 channels each -> 32 x 7 x 7): residual analyzer (3x3), resampling periodicity detector
(5x5 on the spectrum), sharpness mismatch (7x7 on residual energy relative to the inner face) and
blend-boundary detector (dilated 3x3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfpanel.models.specialists.base import register_specialist
from dfpanel.models.specialists.common import PanelSpecialist, branch
from dfpanel.views.ops import (
    face_crop,
    log_spectrum,
    luminance,
    native_window,
    srm_residuals,
)


class ResamplingModule(nn.Module):
    def __init__(self, per_branch: int = 8):
        super().__init__()
        self.residual = branch(3, per_branch, kernel=3, stride=2, downsample=3)
        self.periodicity = branch(1, per_branch, kernel=5, stride=2, downsample=3)
        self.sharpness = branch(3, per_branch, kernel=7, stride=1, downsample=2)
        self.blend = branch(3, per_branch, kernel=3, stride=2, downsample=3, dilation=2)

    @staticmethod
    def relative_sharpness(residuals: torch.Tensor) -> torch.Tensor:
        """log residual energy (4x4 cells) minus its mean over the inner face (the window's middle half)."""
        energy = torch.log(F.avg_pool2d(residuals.abs(), 4) + 1e-3)
        h, w = energy.shape[-2:]
        inner = energy[..., h // 4 : h - h // 4, w // 4 : w - w // 4].mean(dim=(-2, -1), keepdim=True)
        return energy - inner

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        res = inputs["residuals"]
        return torch.cat(
            [self.residual(res), self.periodicity(inputs["spectrum"]), self.sharpness(self.relative_sharpness(res)), self.blend(res)],
            dim=1,
        )


@register_specialist
class RRSpecialist(PanelSpecialist):
    name = "rr"
    # Self-blends whose copy was mostly resampled: RR reads resampling and blending traces in native pixels.
    pseudofakes = ({"name": "self_blend", "resample_p": 0.8},)
    mask_input = "face"
    order = 3
    title = "Resampling traces"
    color = "#d62728"
    looks_for = "the face shows traces of being resized or warped into the frame"
    sample_kind = "frame"
    module_channels = 32
    extra_config = {"rr_size": None, "face_scale": 1.3}

    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:
        pos = positions[0]
        window, _ = native_window(entry, pos, cfg["rr_size"])
        residuals = srm_residuals(torch.from_numpy(luminance(window)))
        return {
            "face": face_crop(entry, pos, cfg["image_size"], cfg["face_scale"]),
            "residuals": residuals,
            "spectrum": log_spectrum(residuals[0])[None],
        }

    @staticmethod
    def input_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
        s, r = cfg["image_size"], cfg["rr_size"]
        return {"face": (3, s, s), "residuals": (3, r, r), "spectrum": (1, r, r)}

    def build_module(self, cfg: dict) -> nn.Module:
        return ResamplingModule(self.module_channels // 4)
