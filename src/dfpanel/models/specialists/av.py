"""AV, lip sync: is the mouth moving in step with the voice?

View (one clip of clip_len frames): the middle frame's face crop (backbone), the clip_len mouth crops
located from the mouth-corner landmarks, and a log-mel spectrogram (16 kHz, n_mels bands,
mel_per_frame columns per frame) covering exactly the clip's time span, so column j belongs to frame
j // mel_per_frame. Without audio the mel is zeros and audio_mask is 0.
Module (12 channels each -> 48 x 7 x 7): lip-motion analyzer (5x5 on mouth frames and their
differences), voice frequency detector (7x7 on the mel), audio-visual correlation checker (3x3 on the
per-frame covariance of mouth features with audio features) and temporal audio consistency (9x9 on
the mel and its time derivative). The three audio branches are multiplied by audio_mask, so with
audio masked AV runs on mouth motion alone, and says so in info["audio_used"].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dfpanel.models.backbone import GRID, GridPool
from dfpanel.models.specialists.base import register_specialist
from dfpanel.models.specialists.common import PanelSpecialist, branch, conv_bn_act
from dfpanel.views.ops import clip_log_mel, face_crop, fit_clip, mouth_crop


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, T, H, W)."""
    return 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]


class AVCorrelation(nn.Module):
    """Where in the mouth does motion co-vary with the voice over the clip? Mouth features per frame
    (c x 7 x 7) times audio features per frame (c), covariance over time, then a 3x3 conv."""

    def __init__(self, clip_len: int, mel_per_frame: int, out_ch: int, width: int = 12):
        super().__init__()
        self.clip_len, self.mel_per_frame = clip_len, mel_per_frame
        self.visual = nn.Sequential(conv_bn_act(2, width, 3, 2), conv_bn_act(width, width, 3, 2), GridPool(GRID))
        self.audio = nn.Sequential(conv_bn_act(1, width, 3), nn.Conv2d(width, width, 3, padding=1))
        self.out = nn.Sequential(nn.Conv2d(width, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, gray: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        b, t, h, w = gray.shape
        motion = torch.cat([gray[:, :1] * 0, gray[:, 1:] - gray[:, :-1]], dim=1)
        frames = torch.stack([gray, motion], dim=2).reshape(b * t, 2, h, w)
        v = self.visual(frames).reshape(b, t, -1, GRID, GRID)
        a = self.audio(mel).mean(dim=2)  # (B, c, T*k): pool over frequency
        a = a.reshape(b, a.shape[1], t, self.mel_per_frame).mean(dim=3).transpose(1, 2)  # (B, T, c)
        v = v - v.mean(dim=1, keepdim=True)
        a = a - a.mean(dim=1, keepdim=True)
        return self.out((v * a[..., None, None]).mean(dim=1))


class LipSyncModule(nn.Module):
    def __init__(self, clip_len: int, mel_per_frame: int, per_branch: int = 12):
        super().__init__()
        self.lips = branch(2 * clip_len - 1, per_branch, kernel=5, stride=1, downsample=2)
        self.voice = branch(1, per_branch, kernel=7, stride=1, downsample=2)
        self.correlation = AVCorrelation(clip_len, mel_per_frame, per_branch)
        self.audio_rhythm = branch(2, per_branch, kernel=9, stride=1, downsample=2)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        gray = _gray(inputs["mouth"])
        mel = inputs["mel"]
        mask = inputs["audio_mask"].reshape(-1, 1, 1, 1).to(mel.dtype)
        lips = self.lips(torch.cat([gray, gray[:, 1:] - gray[:, :-1]], dim=1))
        delta = torch.nn.functional.pad(mel[..., 1:] - mel[..., :-1], (1, 0))
        voice = self.voice(mel) * mask
        correlation = self.correlation(gray, mel) * mask
        rhythm = self.audio_rhythm(torch.cat([mel, delta], dim=1)) * mask
        return torch.cat([lips, voice, correlation, rhythm], dim=1)


@register_specialist
class AVSpecialist(PanelSpecialist):
    name = "av"
    pseudofakes = ("audio_desync",)
    order = 1
    title = "Lip sync"
    needs_audio = True  # abstains on a video without sound
    color = "#ff7f0e"
    looks_for = "the mouth moves out of step with the voice"
    sample_kind = "clip"
    needs_audio = True  # abstains on a video without audio: no made-up lip-sync score
    module_channels = 48
    extra_config = {"n_mels": 80, "mel_per_frame": 4, "mouth_size": 64, "face_scale": 1.3}

    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:
        positions = fit_clip(positions, cfg["clip_len"])
        mel, mask = clip_log_mel(entry, positions, cfg["n_mels"], cfg["mel_per_frame"])
        return {
            "face": face_crop(entry, positions[len(positions) // 2], cfg["image_size"], cfg["face_scale"]),
            "mouth": torch.stack([mouth_crop(entry, p, cfg["mouth_size"]) for p in positions]),
            "mel": mel,
            "audio_mask": mask,
        }

    @staticmethod
    def input_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
        s, t, m = cfg["image_size"], cfg["clip_len"], cfg["mouth_size"]
        return {"face": (3, s, s), "mouth": (t, 3, m, m), "mel": (1, cfg["n_mels"], t * cfg["mel_per_frame"]), "audio_mask": ()}

    def build_module(self, cfg: dict) -> nn.Module:
        return LipSyncModule(cfg["clip_len"], cfg["mel_per_frame"], self.module_channels // 4)

    def output_info(self, inputs: dict[str, torch.Tensor]) -> dict:
        return {"audio_used": inputs["audio_mask"] > 0.5}
