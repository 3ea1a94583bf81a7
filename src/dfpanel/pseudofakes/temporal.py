"""`temporal_blend`: a clip whose inner face wobbles and flickers from frame to frame (TM).

A frame-by-frame face swap pastes each frame's face on its own: its placement and colour are consistent
only up to per-frame error. Here every frame of a real clip is blended (under a face mask) with a warped,
colour-changed copy of itself, where the warp (offset, rotation, scale), the colour gain and the mask's
size each follow a slow random walk over the clip plus independent per-frame noise (flicker). The
frame's landmarks move with the warp (scaled by the blend weight at each landmark), so a detector run on
such a fake would see the face parts jitter: TM reads those trajectories.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

from dfpanel.extract.cache import EditedEntry, FaceTrackEntry, edit_layers
from dfpanel.pseudofakes.base import (
    DonorFn,
    PseudoFake,
    PseudoFakeGenerator,
    register_pseudofake,
)
from dfpanel.pseudofakes.blend import affine_about, paste, unique_positions
from dfpanel.pseudofakes.masks import (
    MASK_PARAMS,
    _uniform,
    draw_mask,
    face_geometry,
    render_mask,
)


def _walk(rng: np.random.Generator, n: int, dims: int, step: float, flicker: float) -> np.ndarray:
    """(n, dims): a random walk of `step` per frame from 0, plus independent per-frame noise `flicker`."""
    walk = np.cumsum(rng.normal(0.0, step, (n, dims)), axis=0)
    return walk + rng.normal(0.0, flicker, (n, dims))


@register_pseudofake
class TemporalBlend(PseudoFakeGenerator):
    name = "temporal_blend"
    traces = ("temporal_jitter",)
    sample_kind = "clip"
    params = {
        # per-frame drift (random-walk step) and flicker (independent noise), standard deviations
        "shift_walk": 0.01, "shift_flicker": 0.02,  # in face sizes
        "rotation_walk": 0.5, "rotation_flicker": 1.0,  # degrees
        "scale_walk": 0.005, "scale_flicker": 0.015,
        "gain_walk": 0.01, "gain_flicker": 0.035,  # colour gain per channel
        "mask_walk": 0.01, "mask_flicker": 0.03,  # mask size factor
        "blend_ratio": (0.7, 1.0),
        **MASK_PARAMS,
    }

    def make(self, entry: FaceTrackEntry, positions: Sequence[int], rng: np.random.Generator,
             donor: DonorFn | None = None) -> PseudoFake:
        o = self.options
        pos_list = unique_positions(positions)
        n = len(pos_list)
        spec = draw_mask(rng, o)
        ratio = _uniform(rng, o["blend_ratio"])
        shift = _walk(rng, n, 2, o["shift_walk"], o["shift_flicker"])
        rot = _walk(rng, n, 1, o["rotation_walk"], o["rotation_flicker"])[:, 0]
        scale = 1 + _walk(rng, n, 1, o["scale_walk"], o["scale_flicker"])[:, 0]
        common = _walk(rng, n, 1, o["gain_walk"], o["gain_flicker"])  # brightness flicker
        gain = 1 + common + _walk(rng, n, 3, o["gain_walk"] / 2, o["gain_flicker"] / 2)  # and a tint
        mask_scale = np.clip(1 + _walk(rng, n, 1, o["mask_walk"], o["mask_flicker"])[:, 0], 0.5, 1.5)
        frames = list(entry.meta.frames)
        edits, masks = {}, {}

        def warp(layer, k, pos):
            crop, fr = layer.image, layer.frame
            h, w = crop.shape[:2]
            box, lm, size = face_geometry(fr)
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            m = affine_about(centre, float(rot[k]), float(scale[k]), shift[k] * size)
            warped = cv2.warpAffine(crop.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REFLECT)
            warped = np.clip(warped * gain[k].astype(np.float32), 0, 255)
            mask = render_mask((h, w), box, lm, spec, float(mask_scale[k])) * np.float32(ratio)
            if layer.name == "context":
                masks[pos] = mask.astype(np.float32)
                # Landmarks follow the warp where the warped copy shows (blend weight at the landmark).
                moved = lm @ m[:, :2].T + m[:, 2]
                xi = np.clip(np.round(lm[:, 0]).astype(int), 0, w - 1)
                yi = np.clip(np.round(lm[:, 1]).astype(int), 0, h - 1)
                weight = mask[yi, xi].astype(np.float64)[:, None]
                new_lm = (lm + (moved - lm) * weight) / fr.scale + np.asarray(fr.crop_box[:2], dtype=np.float64)
                frames[pos] = dataclasses.replace(frames[pos], landmarks=[[float(x), float(y)] for x, y in new_lm])
            return paste(crop, warped, mask)

        for k, pos in enumerate(pos_list):  # the context crop, and native pixels when stored apart
            edits[pos] = edit_layers(entry, pos, lambda layer, k=k, pos=pos: warp(layer, k, pos))
        meta = dataclasses.replace(entry.meta, frames=frames)
        details = {"mask": spec, "blend_ratio": round(ratio, 4), "positions": pos_list,
                   "shift": np.round(shift, 4).tolist(), "rotation_deg": np.round(rot, 3).tolist(),
                   "scale": np.round(scale, 4).tolist(), "gain": np.round(gain, 4).tolist(),
                   "mask_scale": np.round(mask_scale, 4).tolist()}
        return PseudoFake(EditedEntry.from_layers(entry, edits, meta=meta), masks, details)
