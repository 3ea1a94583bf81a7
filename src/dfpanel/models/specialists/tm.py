"""TM, temporal: frame-to-frame inconsistency of a face track.

View (one clip of clip_len consecutive frames of one track): the face crops (the middle one also
feeds the backbone) and the landmark trajectories in units of the clip's mean face box. Frame
differences are taken inside the module (they are a fixed function of the frames; storing them
would double what the data loader moves).
Module (8 channels each -> 32 x 7 x 7): temporal texture consistency (3x3x3 conv), flicker detector
(per-cell colour mean/std over time, temporal conv), landmark-jitter analyzer (1-D conv over the
trajectories and their velocities, laid out on the 7x7 grid by a learned map) and motion-boundary
consistency (5x5 on the frame differences weighted to the face border ring).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dfpanel.errors import ConfigError
from dfpanel.models.backbone import GRID, GridPool
from dfpanel.models.specialists.base import register_specialist
from dfpanel.models.specialists.common import PanelSpecialist, branch
from dfpanel.views.ops import face_crop, fit_clip, landmarks_in_box

N_LANDMARKS = 5


def border_ring(size: int, face_scale: float, width: float = 0.12) -> torch.Tensor:
    """(size, size) weights peaking on the face box's edge inside a face crop cut at face_scale x the box."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # -1..1 across the crop
    cheb = torch.maximum(c[:, None].abs(), c[None, :].abs())
    return torch.exp(-(((cheb - 1.0 / face_scale) / width) ** 2))


class TemporalTexture(nn.Module):
    def __init__(self, out_ch: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1, bias=False), nn.BatchNorm3d(width), nn.SiLU(inplace=True),
            nn.Conv3d(width, width, 3, stride=(1, 2, 2), padding=1, bias=False), nn.BatchNorm3d(width), nn.SiLU(inplace=True),
        )
        self.out = nn.Sequential(nn.Conv2d(width, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), GridPool(GRID))

    def forward(self, small: torch.Tensor) -> torch.Tensor:  # (B, 3, T, h, w)
        return self.out(self.net(small).mean(dim=2))


class Flicker(nn.Module):
    def __init__(self, out_ch: int, width: int = 16):
        super().__init__()
        self.pool = GridPool(GRID)
        self.temporal = nn.Sequential(nn.Conv3d(6, width, (3, 1, 1), padding=(1, 0, 0)), nn.SiLU(inplace=True))
        self.out = nn.Sequential(nn.Conv2d(width, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, T, 3, H, W)
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        mean = self.pool(flat)
        std = (self.pool(flat * flat) - mean * mean).clamp_min(0).add(1e-6).sqrt()
        stats = torch.cat([mean, std], dim=1).reshape(b, t, 6, GRID, GRID)
        stats = stats - stats.mean(dim=1, keepdim=True)  # what changes over time, not the colour itself
        return self.out(self.temporal(stats.transpose(1, 2)).abs().mean(dim=2))


class LandmarkJitter(nn.Module):
    def __init__(self, out_ch: int, width: int = 32):
        super().__init__()
        self.out_ch = out_ch
        # Offsets and velocities are ~1e-2 face boxes: unnormalised, the branch's output barely varies
        # across samples (~1e-3 of the other branches') and fusion cannot hear the jitter.
        self.norm = nn.BatchNorm1d(4 * N_LANDMARKS)
        self.net = nn.Sequential(
            nn.Conv1d(4 * N_LANDMARKS, width, 3, padding=1), nn.SiLU(inplace=True),
            nn.Conv1d(width, width, 3, padding=1), nn.SiLU(inplace=True),
        )
        self.to_grid = nn.Linear(2 * width, out_ch * GRID * GRID)
        self.out = nn.BatchNorm2d(out_ch)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:  # (B, T, 10)
        x = landmarks.transpose(1, 2)
        velocity = F.pad(x[..., 1:] - x[..., :-1], (1, 0))
        h = self.net(self.norm(torch.cat([x - x.mean(dim=2, keepdim=True), velocity], dim=1)))
        summary = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.out(self.to_grid(summary).reshape(-1, self.out_ch, GRID, GRID))


class TemporalModule(nn.Module):
    def __init__(self, clip_len: int, image_size: int, face_scale: float, per_branch: int = 8):
        super().__init__()
        self.texture = TemporalTexture(per_branch)
        self.flicker = Flicker(per_branch)
        self.jitter = LandmarkJitter(per_branch)
        self.motion_boundary = branch(clip_len - 1, per_branch, kernel=5, stride=2, downsample=2)
        self.register_buffer("ring", border_ring(image_size // 2, face_scale), persistent=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        frames = inputs["frames"]  # (B, T, 3, S, S)
        b, t, c, s, _ = frames.shape
        half = F.avg_pool2d(frames.flatten(0, 1), 2).reshape(b, t, c, s // 2, s // 2)
        quarter = F.avg_pool2d(half.flatten(0, 1), 2).reshape(b, t, c, s // 4, s // 4)
        diffs = (half[:, 1:] - half[:, :-1]).abs().mean(dim=2)  # (B, T-1, S/2, S/2)
        return torch.cat(
            [
                self.texture(quarter.transpose(1, 2)),
                self.flicker(frames),
                self.jitter(inputs["landmarks"]),
                self.motion_boundary(diffs * self.ring),
            ],
            dim=1,
        )


@register_specialist
class TMSpecialist(PanelSpecialist):
    name = "tm"
    pseudofakes = ("temporal_blend",)
    order = 4
    title = "Temporal consistency"
    color = "#9467bd"
    looks_for = "the face flickers or jitters from frame to frame"
    sample_kind = "clip"
    module_channels = 32
    extra_config = {"face_scale": 1.3}

    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:
        positions = fit_clip(positions, cfg["clip_len"])
        return {
            "frames": torch.stack([face_crop(entry, p, cfg["image_size"], cfg["face_scale"]) for p in positions]),
            "landmarks": landmarks_in_box(entry, positions),
        }

    @staticmethod
    def input_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
        s, t = cfg["image_size"], cfg["clip_len"]
        return {"frames": (t, 3, s, s), "landmarks": (t, 2 * N_LANDMARKS)}

    def check_config(self, cfg: dict) -> None:
        super().check_config(cfg)
        if cfg["clip_len"] < 2 or cfg["image_size"] % 4:
            raise ConfigError(f"specialist 'tm': needs clip_len >= 2 and image_size divisible by 4, got {cfg['clip_len']}, {cfg['image_size']}")

    def build_module(self, cfg: dict) -> nn.Module:
        return TemporalModule(cfg["clip_len"], cfg["image_size"], cfg["face_scale"], self.module_channels // 4)

    def backbone_image(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["frames"][:, inputs["frames"].shape[1] // 2]
