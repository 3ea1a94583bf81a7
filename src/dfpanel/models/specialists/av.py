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

Gate (`build_gate`): lip-sync evidence exists only while someone visibly speaks, so a clip holds none
(and its view gets audio_mask 0 and a zero mel) when
  - the video has no audio track: "no audio track";
  - the clip is not inside the track's speech span or is not mostly speech (silence, leading or
    trailing silence, music, hiss, audio that stops before the clip ends; `views.speech.clip_speech`):
    "no speech in the clip";
  - the mouth is not visible in most of its frames (under MIN_VISIBLE_MOUTH = half of them): a frame's
    mouth is visible when both mouth corners lie inside the face box widened by MOUTH_BOX_SLACK (10 %)
    of its width on each side, the corners are at least MIN_MOUTH_WIDTH (15 %) of the face box width
    apart (a frontal mouth spans about 35-45 %, a strong profile or a hand over the mouth collapses the
    corners), and its face was detected (`FrameRecord.detected`) or lies in a run of at most
    MAX_BRIDGED_FRAMES (3) tracked frames between two detected frames of its clip whose mouths are
    visible. Extraction runs the detector on only every 4th frame of a clip where it cannot follow the
    face frame to frame (`--track interpolate`, and refine's fallback) and interpolates the others, so
    counting detected frames alone gated every such clip (3 of 8 frames); a longer gap means the
    detector looked and found no face, and a frame before the first or after the last detection holds
    a guess: neither counts: "mouth not visible".
Gated clips are left out of training losses and video scores; a video whose clips are all gated makes
AV abstain with the most common reason. AV is `one_sided`: the panel lets its "fake" count but never
its "real" (a face swap that kept the original voice is in sync).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dfpanel.models.backbone import GRID, GridPool
from dfpanel.models.specialists.base import register_specialist
from dfpanel.models.specialists.common import PanelSpecialist, branch, conv_bn_act
from dfpanel.views.ops import clip_log_mel, face_crop, fit_clip, mouth_crop
from dfpanel.views.speech import clip_speech

MIN_MOUTH_WIDTH = 0.15  # mouth-corner distance / face box width below which the mouth is not seen
MOUTH_BOX_SLACK = 0.10  # mouth corners may lie this share of the box width outside the face box
MIN_VISIBLE_MOUTH = 0.5  # share of a clip's frames that must show the mouth
MAX_BRIDGED_FRAMES = 3  # tracked frames between two detections still count (extract's detect_every 4 - 1)

NO_AUDIO = "no audio track"
NO_SPEECH = "no speech in the clip"
NO_MOUTH = "mouth not visible"


def mouth_in_box(frame) -> bool:
    """Do this FrameRecord's mouth corners lie inside its (slightly widened) face box without collapsing
    onto each other? (thresholds in the module docstring; says nothing of whether they were detected)"""
    x0, y0, x1, y1 = (float(v) for v in frame.box)
    w = max(x1 - x0, 1e-6)
    slack = MOUTH_BOX_SLACK * w
    corners = frame.landmarks[3:5]
    if len(corners) < 2:
        return False
    for x, y in corners:
        if not (x0 - slack <= x <= x1 + slack and y0 - slack <= y <= y1 + slack):
            return False
    (lx, ly), (rx, ry) = corners
    return ((rx - lx) ** 2 + (ry - ly) ** 2) ** 0.5 >= MIN_MOUTH_WIDTH * w


def mouth_visible(frames: Sequence, pos: int) -> bool:
    """Is the mouth of frames[pos] seen: in its box, and detected or bridged between two detected,
    visible mouths of its clip at most MAX_BRIDGED_FRAMES apart? (module docstring)"""
    frame = frames[pos]
    if not mouth_in_box(frame):
        return False
    if frame.detected:
        return True

    def detected_at(step: int) -> int | None:  # the nearest detected position of this clip that way
        q = pos + step
        while 0 <= q < len(frames) and frames[q].clip == frame.clip:
            if frames[q].detected:
                return q
            q += step
        return None

    before, after = detected_at(-1), detected_at(1)
    if before is None or after is None or after - before - 1 > MAX_BRIDGED_FRAMES:
        return False
    return mouth_in_box(frames[before]) and mouth_in_box(frames[after])


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
    # Half shifted, half replaced voices: both lip-sync fakes the field meets (a dubbed or cloned voice).
    pseudofakes = ({"name": "audio_desync", "replace_p": 0.5},)
    order = 1
    title = "Lip sync"
    color = "#ff7f0e"
    looks_for = "the mouth moves out of step with the voice"
    sample_kind = "clip"
    needs_audio = True  # abstains on a video without audio: no made-up lip-sync score
    module_channels = 48
    extra_config = {"n_mels": 80, "mel_per_frame": 4, "mouth_size": 64, "face_scale": 1.3}

    one_sided = True  # its "fake" counts, its "real" does not (see the module docstring)

    @staticmethod
    def build_gate(entry, positions: Sequence[int], cfg: dict) -> str | None:
        """Why this clip holds no lip-sync evidence (module docstring), or None when it does."""
        positions = fit_clip(positions, cfg["clip_len"])
        if entry.meta.audio is None:
            return NO_AUDIO
        if not clip_speech(entry, positions):
            return NO_SPEECH
        frames = entry.meta.frames
        if sum(mouth_visible(frames, p) for p in positions) < MIN_VISIBLE_MOUTH * len(positions):
            return NO_MOUTH
        return None

    @staticmethod
    def build_view(entry, positions: Sequence[int], cfg: dict) -> dict[str, torch.Tensor]:
        positions = fit_clip(positions, cfg["clip_len"])
        if AVSpecialist.build_gate(entry, positions, cfg) is not None:  # no evidence: no audio to look at
            mel = torch.zeros(1, cfg["n_mels"], len(positions) * cfg["mel_per_frame"])
            mask = torch.tensor(0.0)
        else:
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
