"""Face masks for pseudo-fakes, from a frame's 5 landmarks and its face box (Self-Blended-Images style).

Five points (eyes, nose, mouth corners) only outline eyes-nose-mouth, so the region is grown to the inner
face: the landmarks are pushed out from their centroid by a factor `grow`, and (with `ellipse_p`) joined
by an ellipse inscribed in the face box; their convex hull, densified, is deformed radially by a random
low-order wave (an irregular outline), eroded or dilated, and blurred into a soft edge (or kept binary:
the hard variant).

The draws (`draw_mask`) are separate from the drawing (`render_mask`): a clip draws once and renders that
same shape on every frame's own landmarks, and TM's pseudo-fake scales the outline per frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dfpanel.views.ops import box_in_crop, points_in_crop

# Mask options shared by the generators (each generator lists them in its own `params`).
MASK_PARAMS = {
    "mask_grow": (1.5, 2.0),  # landmarks pushed out from their centroid by this factor
    "mask_ellipse_p": 0.6,  # chance to join the hull with an ellipse in the face box
    "mask_ellipse_scale": (0.7, 0.95),  # the ellipse's half-axes, in half face-box sides
    "mask_deform": 0.08,  # radial deformation amplitude (share of the radius), up to
    "mask_morph": (-0.04, 0.06),  # erosion (<0) / dilation (>0), in face sizes
    "mask_blur": (0.02, 0.1),  # Gaussian blur sigma of the edge, in face sizes
    "mask_hard_p": 0.1,  # chance of a binary mask (no blur)
}

N_WAVES = 3  # radial deformation: harmonics 2..N_WAVES+1 of the angle round the centroid


def face_geometry(frame) -> tuple[np.ndarray, np.ndarray, float]:
    """(face box in crop pixels, landmarks (5, 2) in crop pixels, face size = sqrt(box area) in crop
    pixels) of a FrameRecord; `frame.scale` crop pixels per source pixel (a layer: frame_layers)."""
    box = box_in_crop(frame.box, frame.crop_box, frame.scale)
    lm = points_in_crop(frame.landmarks, frame.crop_box, frame.scale)
    size = float(np.sqrt(max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0)))
    return box, lm, size


def _uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = (float(b) for b in bounds)
    return float(rng.uniform(lo, hi)) if hi > lo else lo


def draw_mask(rng: np.random.Generator, options: dict) -> dict:
    """One mask shape's random draws (JSON-serialisable), from the generator's options."""
    amp = float(options["mask_deform"])
    return {
        "grow": round(_uniform(rng, options["mask_grow"]), 4),
        "ellipse": bool(rng.random() < float(options["mask_ellipse_p"])),
        "ellipse_scale": round(_uniform(rng, options["mask_ellipse_scale"]), 4),
        "waves": [[round(float(rng.uniform(0, amp)) / (k + 1), 4), round(float(rng.uniform(0, 2 * np.pi)), 4)]
                  for k in range(N_WAVES)],
        "morph": round(_uniform(rng, options["mask_morph"]), 4),
        "blur": round(_uniform(rng, options["mask_blur"]), 4),
        "hard": bool(rng.random() < float(options["mask_hard_p"])),
    }


def _densify(poly: np.ndarray, per_edge: int = 6) -> np.ndarray:
    nxt = np.roll(poly, -1, axis=0)
    t = np.arange(per_edge, dtype=np.float64)[None, :, None] / per_edge
    return (poly[:, None] * (1 - t) + nxt[:, None] * t).reshape(-1, 2)


def outline(box: Sequence[float], landmarks: np.ndarray, spec: dict, scale: float = 1.0) -> np.ndarray:
    """The mask's polygon (M, 2) in crop pixels: grown landmarks (+ ellipse) hull, deformed, times `scale`
    about its centre."""
    lm = np.asarray(landmarks, dtype=np.float64)
    centre = lm.mean(axis=0)
    pts = [centre + (lm - centre) * spec["grow"]]
    if spec["ellipse"]:
        bx = np.asarray(box, dtype=np.float64)
        c = (bx[:2] + bx[2:]) / 2
        half = (bx[2:] - bx[:2]) / 2 * spec["ellipse_scale"]
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts.append(c + np.stack([np.cos(a), np.sin(a)], axis=1) * half)
    pts = np.concatenate(pts)
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    poly = _densify(hull) if len(hull) >= 3 else pts
    c = poly.mean(axis=0)
    rel = poly - c
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    radial = np.ones(len(poly))
    for k, (amp, phase) in enumerate(spec["waves"]):
        radial += amp * np.cos((k + 2) * ang + phase)
    return c + rel * (radial * scale)[:, None]


def render_mask(shape: tuple[int, int], box: Sequence[float], landmarks: np.ndarray, spec: dict,
                scale: float = 1.0) -> np.ndarray:
    """The float32 HxW mask in [0, 1] of `spec` on this frame's face (crop pixels). Exactly 0 far from the
    face (values under 1e-3 are cut to 0), so 'outside the mask' is well defined."""
    h, w = shape
    bx = np.asarray(box, dtype=np.float64)
    size = float(np.sqrt(max(bx[2] - bx[0], 1.0) * max(bx[3] - bx[1], 1.0)))
    poly = outline(box, landmarks, spec, scale)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4)
    r = int(round(abs(spec["morph"]) * size))
    if r > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        morphed = cv2.dilate(mask, kernel) if spec["morph"] > 0 else cv2.erode(mask, kernel)
        if morphed.any():  # an erosion that would swallow a tiny face keeps the shape instead
            mask = morphed
    out = mask.astype(np.float32) / 255.0
    if not spec["hard"]:
        sigma = max(spec["blur"] * size, 0.5)
        out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        peak = float(out.max())
        if peak > 0:
            out = np.clip(out / peak, 0.0, 1.0)
    out[out < 1e-3] = 0.0
    return out.astype(np.float32)


def frame_mask(entry, pos: int, spec: dict, scale: float = 1.0) -> np.ndarray:
    """render_mask on frame position `pos` of a cache entry (its crop's shape, box and landmarks)."""
    frame = entry.meta.frames[pos]
    box, lm, _ = face_geometry(frame)
    return render_mask(entry.crop(pos).shape[:2], box, lm, spec, scale)
