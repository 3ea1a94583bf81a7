"""The fake traces, each made for real in pixels or audio.

- `face_swap`: another identity's inner face, rendered small and scaled up (resampling traces), colour
  matched only partly and blended in under a feathered mask (blend boundary; RR, BG).
- `relight`: the face is lit from another direction than the scene's (its shading redone for a light
  from the other side, +-60 degrees), in another tint and exposure (BG).
- `recompress`: the face region JPEG-compressed on an 8x8 grid shifted off the frame's grid, pasted back (CM).
- `temporal_jitter`: per-frame flicker of the face colour and per-frame geometric jitter of the inner face (TM).
- `audio_shift` / `audio_replace`: the voice moved 0.2-0.6 s against the mouth, or another talker's voice (AV).
  These leave the pixels exactly as in the real video.

Every random choice comes from the output's own seed (and the frame index), so a fake is the same on
every run and independent of which other videos are made alongside it.
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from dfpanel.synth.audio import make_speech, shift_audio
from dfpanel.synth.faces import (
    CANVAS_H,
    CANVAS_W,
    EYE_DIST,
    FaceLight,
    FaceState,
    Identity,
)
from dfpanel.synth.scene import Scene, layer_roi, warp_to_roi

MANIPULATIONS = ("face_swap", "relight", "recompress", "temporal_jitter", "audio_shift", "audio_replace")
VISUAL = frozenset(MANIPULATIONS[:4])
AUDIO = frozenset(MANIPULATIONS[4:])


def _mask_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask > 0.01)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float)


def region_mask(identity: Identity, region: str) -> np.ndarray:
    """Canvas mask where a trace applies: the inner face, or only its mouth/lower part."""
    if region == "face":
        return identity.inner
    lm = identity.landmarks
    nose_y = lm[2, 1]
    yy = np.arange(CANVAS_H, dtype=np.float32)[:, None]
    lower = np.clip((yy - nose_y) / 4.0, 0.0, 1.0) * np.ones((1, CANVAS_W), np.float32)
    return (identity.inner * lower).astype(np.float32)


class FakeTraces:
    """Applies one fake video's visual manipulations, frame by frame."""

    def __init__(self, manipulations, seed: int, scene: Scene, target: Identity, source: Identity | None = None,
                 *, fine_blend: bool = False, region: str = "face"):
        self.names = tuple(m for m in manipulations if m in VISUAL)
        self.seed, self.scene, self.target = seed, scene, target
        self.source = source if source is not None else target
        rng = np.random.default_rng([seed, 0xFACE])
        self.details: dict = {}
        self.mask = region_mask(target, region)
        self.mask_box = _mask_box(self.mask)
        if "face_swap" in self.names:
            self.resample = float(rng.uniform(0.45, 0.7))
            self.upsampler = int(rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC]))
            self.feather = float(rng.uniform(3.0, 5.0) if fine_blend else rng.uniform(0.8, 1.8))
            self.erode = 0 if fine_blend else int(rng.integers(1, 3))
            self.colour_match = float(rng.uniform(0.85, 0.95) if fine_blend else rng.uniform(0.55, 0.8))
            self.details["face_swap"] = {"resample": round(self.resample, 3), "fine_blend": fine_blend,
                                         "colour_match": round(self.colour_match, 3)}
        if "relight" in self.names:
            self.relight_angle = scene.light_angle + np.pi + rng.uniform(-np.pi / 3, np.pi / 3)
            self.relight_ambient = float(rng.uniform(0.4, 0.65))
            tint = rng.uniform(0.03, 0.07, 3) * rng.choice([-1, 1], 3)
            self.relight_tint = 1 + tint
            self.relight_gain = float(rng.uniform(0.9, 1.1))
            self.details["relight"] = {"angle_deg": round(float(np.rad2deg(self.relight_angle)) % 360, 1),
                                       "ambient": round(self.relight_ambient, 3),
                                       "tint": [round(float(t), 3) for t in self.relight_tint]}
        if "recompress" in self.names:
            self.quality = int(rng.integers(12, 31))  # low enough for the blocks to outlast H.264 at crf 23
            self.grid = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
            self.details["recompress"] = {"jpeg_quality": self.quality, "grid_offset": list(self.grid), "region": region}
        if "temporal_jitter" in self.names:
            self.jitter_px = float(rng.uniform(0.035, 0.06))  # in eye distances
            self.flicker = float(rng.uniform(0.03, 0.055))
            self.details["temporal_jitter"] = {"shift_eye_dist": round(self.jitter_px, 3), "flicker": round(self.flicker, 3)}

    @property
    def changes_pixels(self) -> bool:
        return bool(self.names)

    def _jittered(self, affine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
        ang = rng.normal(0, np.deg2rad(1.2))
        scale = 1 + rng.normal(0, 0.018)
        c, sn = np.cos(ang) * scale, np.sin(ang) * scale
        centre = np.array([CANVAS_W / 2, CANVAS_H / 2 + 10])
        rot = np.array([[c, -sn], [sn, c]])
        lin = affine[:, :2] @ rot
        t = affine[:, :2] @ (centre - rot @ centre) + affine[:, 2] + rng.normal(0, self.jitter_px * EYE_DIST * s, 2)
        return np.hstack([lin, t[:, None]])

    def frame(self, i: int, composite: np.ndarray, real: np.ndarray, state: FaceState, affine: np.ndarray) -> np.ndarray:
        """The fake frame i (uint8). Only the face region differs from the real frame, so only it is redone.

        composite: the real unlit composite; real: the real finished frame (both uint8, neither modified).
        """
        scene = self.scene
        h, w = composite.shape[:2]
        rng = np.random.default_rng([self.seed, 0xF4A, i])
        layer_affine = self._jittered(affine, rng) if "temporal_jitter" in self.names else affine
        roi = layer_roi(layer_affine, w, h, pad=8, box=self.mask_box)
        if roi is None:
            return real
        x1, y1, x2, y2 = roi
        comp = composite[y1:y2, x1:x2]
        mask = np.clip(warp_to_roi(self.mask, layer_affine, roi), 0.0, 1.0)
        if "face_swap" in self.names or "temporal_jitter" in self.names:
            face = self._face_layer(state, layer_affine, roi)
            blend = mask
            if "face_swap" in self.names:
                if self.erode:
                    blend = cv2.erode(blend, np.ones((2 * self.erode + 1,) * 2, np.uint8))
                blend = cv2.GaussianBlur(blend, (0, 0), self.feather)
                face = self._match_colour(face, comp, blend)
            b = blend[..., None]
            comp = np.clip(np.rint(comp * (1 - b) + face * b), 0, 255).astype(np.uint8)
        gain = None
        if "relight" in self.names or "temporal_jitter" in self.names:
            gain = np.ones((y2 - y1, x2 - x1, 3), np.float32)
            if "relight" in self.names:
                gain *= warp_to_roi(self._relight_gain, layer_affine, roi)[..., None] * self.relight_tint.astype(np.float32)
            if "temporal_jitter" in self.names:
                gain *= (1 + rng.normal(0, self.flicker)) * (1 + rng.normal(0, self.flicker * 0.5, 3)).astype(np.float32)
            m = mask[..., None]
            gain = 1 - m + m * gain
        out = real.copy()
        out[y1:y2, x1:x2] = scene.finish(i, comp, roi, gain)
        if "recompress" in self.names:
            self._recompress(out, roi, mask)
        return out

    @cached_property
    def _relight_gain(self) -> np.ndarray:
        """Canvas gain taking the target's scene shading to its shading under the relit light (once per video)."""
        scene, light = self.scene, self.scene.face_light
        other = FaceLight(self.relight_angle, light.elevation, self.relight_ambient)
        return self.relight_gain * scene.shading(self.target, other) / scene.shading(self.target)

    def _face_layer(self, state: FaceState, affine: np.ndarray, roi) -> np.ndarray:
        # The pasted face is lit by the scene, as a swap model trained on the target's frames renders it.
        rgb, _ = self.scene.lit_face(self.source, state)
        if "face_swap" not in self.names:
            return warp_to_roi(rgb, affine, roi).astype(np.float32)
        # Generated small, then scaled up into place: the resampling trace.
        x1, y1, x2, y2 = roi
        r = self.resample
        sw, sh = max(int((x2 - x1) * r), 4), max(int((y2 - y1) * r), 4)
        m = affine.copy()
        m[:, 2] -= (x1, y1)
        m *= np.array([[sw / (x2 - x1)], [sh / (y2 - y1)]])
        small = cv2.warpAffine(rgb, m, (sw, sh), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(small, (x2 - x1, y2 - y1), interpolation=self.upsampler).astype(np.float32)

    def _match_colour(self, face: np.ndarray, under: np.ndarray, blend: np.ndarray) -> np.ndarray:
        wsum = blend.sum() + 1e-6
        under = under.astype(np.float32)
        mf = (face * blend[..., None]).sum((0, 1)) / wsum
        mu = (under * blend[..., None]).sum((0, 1)) / wsum
        return face + self.colour_match * (mu - mf)

    def _recompress(self, frame: np.ndarray, roi, mask: np.ndarray) -> None:
        """JPEG the face region on a grid shifted by self.grid from the frame's 8x8 grid; paste back."""
        x1, y1, x2, y2 = roi
        gx, gy = self.grid
        h, w = frame.shape[:2]
        bx1, by1 = max(((x1 - gx) // 8) * 8 + gx, 0), max(((y1 - gy) // 8) * 8 + gy, 0)
        crop = frame[by1:y2, bx1:x2]
        ok, buf = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        jpeg = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)
        sub = jpeg[y1 - by1 :, x1 - bx1 :]
        m = np.clip(mask * 1.3, 0, 1)[..., None]
        region = frame[y1:y2, x1:x2].astype(np.float32)
        frame[y1:y2, x1:x2] = np.clip(region * (1 - m) + sub * m + 0.5, 0, 255).astype(np.uint8)


def fake_audio(names, seed: int, audio: np.ndarray, seconds: float, f0: float, sample_rate: int) -> tuple[np.ndarray, dict]:
    """The audio track of a fake: shifted, replaced, or (no audio manipulation) the real one."""
    rng = np.random.default_rng([seed, 0xA5])
    details: dict = {}
    if "audio_replace" in names:
        other_f0 = float(f0 * rng.choice([0.8, 1.25]) * rng.uniform(0.95, 1.05))
        audio = make_speech(int(rng.integers(2**31)), seconds, other_f0, sample_rate).audio
        details["audio_replace"] = {"voice_f0": round(other_f0, 1)}
    if "audio_shift" in names:
        shift = float(rng.uniform(0.2, 0.6) * rng.choice([-1, 1]))
        audio = shift_audio(audio, shift, sample_rate, seed)
        details["audio_shift"] = {"seconds": round(shift, 3)}
    return audio, details
