"""CM, compression history: does the face carry a different compression history than its frame?

View: luminance of a fixed cm_size x cm_size window of NATIVE pixels centred on the face (never
resized, never interpolated), its origin snapped to the source frame's 8x8 block grid so each 8x8
tile is one codec block; the 8x8 block DCT of that window; and the resized face for the backbone.
Module (10 channels each -> 40 x 7 x 7): DCT coefficient analyzer (per 8x8 block), quantization
artifact detector (4x4, stride 2, on coefficient magnitudes), block boundary checker (3x3 on the
per-block profile of pixel steps by position in the block) and compression level estimator (5x5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dfpanel.errors import ConfigError
from dfpanel.models.specialists.base import register_specialist
from dfpanel.models.specialists.common import PanelSpecialist, branch, conv_bn_act
from dfpanel.views.ops import BLOCK, block_dct, face_crop, luminance, native_window


def block_step_profile(luma: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 16, H/8, W/8): per block, the mean |horizontal step| at each of the 8 column
    positions and the mean |vertical step| at each of the 8 row positions. Blocking shows as a peak at
    position 7 (the step into the next block)."""
    b, _, h, w = luma.shape
    dx = torch.nn.functional.pad((luma[..., :, 1:] - luma[..., :, :-1]).abs(), (0, 1))
    dy = torch.nn.functional.pad((luma[..., 1:, :] - luma[..., :-1, :]).abs(), (0, 0, 0, 1))
    gh, gw = h // BLOCK, w // BLOCK
    cols = dx.reshape(b, gh, BLOCK, gw, BLOCK).mean(dim=2).permute(0, 3, 1, 2)  # (B, 8, gh, gw)
    rows = dy.reshape(b, gh, BLOCK, gw, BLOCK).mean(dim=4).permute(0, 2, 1, 3)  # (B, 8, gh, gw)
    return torch.log1p(32.0 * torch.cat([cols, rows], dim=1))


class CompressionModule(nn.Module):
    def __init__(self, per_branch: int = 10):
        super().__init__()
        coeffs = BLOCK * BLOCK
        self.dct_analyzer = nn.Sequential(conv_bn_act(coeffs, 32, 1), branch(32, per_branch, kernel=3, stride=1, downsample=1))
        self.quantization = branch(coeffs, per_branch, kernel=4, stride=2, downsample=0, width=32)
        self.block_boundary = branch(2 * BLOCK, per_branch, kernel=3, stride=1, downsample=1)
        self.level = branch(1, per_branch, kernel=5, stride=2, downsample=2)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        luma, dct = inputs["luma"], inputs["dct"]
        magnitude = torch.log1p(32.0 * dct.abs())  # quantization packs magnitudes on a lattice
        return torch.cat(
            [self.dct_analyzer(dct), self.quantization(magnitude), self.block_boundary(block_step_profile(luma)), self.level(luma)],
            dim=1,
        )


@register_specialist
class CMSpecialist(PanelSpecialist):
    name = "cm"
    order = 2
    title = "Compression history"
    sample_kind = "frame"
    module_channels = 40
    extra_config = {"cm_size": None, "face_scale": 1.3}

    def check_config(self, cfg: dict) -> None:
        super().check_config(cfg)
        if cfg["cm_size"] % BLOCK or cfg["cm_size"] < 8 * BLOCK:
            raise ConfigError(f"specialist 'cm': cm_size must be a multiple of 8 and at least 64, got {cfg['cm_size']}")

    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:
        pos = positions[0]
        window, _ = native_window(entry, pos, cfg["cm_size"])
        luma = (torch.from_numpy(luminance(window)) - 128.0) / 128.0  # JPEG's level shift, scaled
        return {
            "face": face_crop(entry, pos, cfg["image_size"], cfg["face_scale"]),
            "luma": luma[None],
            "dct": block_dct(luma),
        }

    @staticmethod
    def input_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
        s, c = cfg["image_size"], cfg["cm_size"]
        return {"face": (3, s, s), "luma": (1, c, c), "dct": (BLOCK * BLOCK, c // BLOCK, c // BLOCK)}

    def build_module(self, cfg: dict) -> nn.Module:
        return CompressionModule(self.module_channels // 4)
