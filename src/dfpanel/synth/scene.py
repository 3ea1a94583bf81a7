"""The world around the face: a room-like background, scene lighting, camera and head motion, blinks.

Everything is drawn once per video (background larger than the frame, a lighting gain field, a small
pool of sensor-noise frames) and then only cropped, warped and blended per frame, so a 320x240 frame
costs a few milliseconds. Lighting multiplies the whole composite (background, body and face alike):
in a real video the face is lit like its surroundings, which is exactly what `relight` breaks. The
head is also shaded as a solid lit from the same direction (`face_light`): a planar gain alone, a few
per cent over a face, would leave a face lit much as the photo it came from was.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import cv2
import numpy as np

from dfpanel.synth.faces import (
    CANVAS_H,
    CANVAS_W,
    EYE_DIST,
    FaceLight,
    FaceState,
    Identity,
)

FACE_CENTRE = np.array([104.0, 128.0])  # canvas point placed on the head path
NECK_BOTTOM = np.array([104.0, 232.0])
LIGHT_ONE = 128.0  # uint8 light value meaning gain 1.0
MARGIN = 0.12  # background is this much larger than the frame on each side, for camera motion


def light_angle(seed: int) -> float:
    """Direction the scene light comes from (radians), fixed by the scene seed alone."""
    return float(np.random.default_rng([seed, 0x11]).uniform(0, 2 * np.pi))


def face_light(seed: int) -> FaceLight:
    """How the scene's light falls on the head: its direction, its height and how soft it is."""
    rng = np.random.default_rng([seed, 0x5AD])
    return FaceLight(light_angle(seed), float(np.deg2rad(rng.uniform(20, 50))), float(rng.uniform(0.4, 0.65)))


@lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]


def _smooth_path(rng: np.random.Generator, n: int, fps: float, amp: float, fmax: float = 0.5) -> np.ndarray:
    """A smooth wandering signal of n frames, zero mean, roughly +-amp."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(0.06, fmax) * t + rng.uniform(0, 2 * np.pi))
    return (out * amp / 2.0).astype(np.float64)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A room-ish backdrop: graded wall, window/door/shelves/pictures, optional texture, soft focus."""
    hue = rng.uniform(0, 180)
    wall = cv2.cvtColor(np.uint8([[[hue, rng.uniform(15, 90), rng.uniform(110, 225)]]]), cv2.COLOR_HSV2RGB)[0, 0]
    grad = np.linspace(rng.uniform(0.85, 1.05), rng.uniform(0.75, 1.0), h, dtype=np.float32)[:, None, None]
    img = np.ones((h, w, 3), np.float32) * wall.astype(np.float32) * grad
    if rng.random() < 0.45:
        tex = _texture(str(rng.choice(["brick", "grass", "gravel"]))).astype(np.float32)
        tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_AREA)
        img = img * (1 - 0.25) + 0.25 * tex * (wall.astype(np.float32) / 160.0)
    unit = min(w, h)
    for _ in range(int(rng.integers(3, 8))):
        kind = rng.integers(4)
        x0, y0 = int(rng.uniform(-0.1, 0.95) * w), int(rng.uniform(-0.1, 0.8) * h)
        rw, rh = int(rng.uniform(0.1, 0.4) * unit), int(rng.uniform(0.1, 0.5) * unit)
        color = rng.uniform(30, 240, 3)
        if kind == 0:  # window: bright pane with bars
            cv2.rectangle(img, (x0, y0), (x0 + rw, y0 + rh), (230, 235, 245), -1)
            t = max(2, unit // 80)
            cv2.rectangle(img, (x0, y0), (x0 + rw, y0 + rh), color.tolist(), t * 2)
            cv2.line(img, (x0 + rw // 2, y0), (x0 + rw // 2, y0 + rh), color.tolist(), t)
        elif kind == 1:  # door or cupboard
            cv2.rectangle(img, (x0, y0), (x0 + rw // 2, y0 + 2 * rh), (color * 0.6).tolist(), -1)
        elif kind == 2:  # shelf with books
            cv2.rectangle(img, (x0, y0), (x0 + rw, y0 + max(3, unit // 60)), (color * 0.5).tolist(), -1)
            bx = x0
            while bx < x0 + rw:
                bw = int(rng.uniform(0.01, 0.03) * unit) + 1
                bh = int(rng.uniform(0.04, 0.09) * unit)
                cv2.rectangle(img, (bx, y0 - bh), (bx + bw, y0), rng.uniform(20, 220, 3).tolist(), -1)
                bx += bw + 1
        else:  # picture frame with a soft abstract inside
            cv2.rectangle(img, (x0, y0), (x0 + rw, y0 + rh), (color * 0.4).tolist(), -1)
            m = max(2, unit // 50)
            cv2.rectangle(img, (x0 + m, y0 + m), (x0 + rw - m, y0 + rh - m), rng.uniform(60, 230, 3).tolist(), -1)
    sigma = rng.uniform(0.6, 2.2) * unit / 240.0  # shallow depth of field
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.clip(img, 0, 255).astype(np.uint8)


def light_field(w: int, h: int, angle: float, strength: float, tint: np.ndarray, ambient: float) -> np.ndarray:
    """Multiplicative gain (h x w x 3): brighter towards the light at `angle`, tinted, times ambient."""
    extent = float(np.hypot(w, h)) / 2
    xx = (np.arange(w, dtype=np.float32) - w / 2) / extent
    yy = (np.arange(h, dtype=np.float32) - h / 2) / extent
    ramp = np.cos(angle) * xx[None, :] + np.sin(angle) * yy[:, None]
    gain = ambient * (1.0 + strength * np.clip(ramp, -1.2, 1.2))
    return gain[..., None] * tint.astype(np.float32)[None, None, :]


class Scene:
    """One video's world: background, light, motion and blinks, all from one seed."""

    def __init__(self, seed: int, size: tuple[int, int], fps: float, n_frames: int):
        self.w, self.h = size
        self.fps, self.n = fps, n_frames
        rng = np.random.default_rng([seed, 0x5C3])
        self.seed = seed
        w, h = self.w, self.h
        self.light_angle = light_angle(seed)
        self.face_light = face_light(seed)
        self._shading: dict[tuple[str, FaceLight], np.ndarray] = {}
        self.noise_sigma = rng.uniform(1.2, 3.0)
        # Camera: slow pan and slight zoom inside the margin.
        self.cam_x = _smooth_path(rng, n_frames, fps, MARGIN * w * 0.6, 0.25)
        self.cam_y = _smooth_path(rng, n_frames, fps, MARGIN * h * 0.4, 0.25)
        self.cam_zoom = 1 + _smooth_path(rng, n_frames, fps, 0.03, 0.2)
        # Head: position, size, roll and a left-right squash that reads as a little yaw.
        eye_px = h * rng.uniform(0.12, 0.155)
        self.head_scale = eye_px / EYE_DIST * (1 + _smooth_path(rng, n_frames, fps, 0.04))
        self.head_x = w * rng.uniform(0.4, 0.6) + _smooth_path(rng, n_frames, fps, 0.04 * w, 0.6)
        self.head_y = h * rng.uniform(0.42, 0.5) + _smooth_path(rng, n_frames, fps, 0.025 * h, 0.6)
        self.head_roll = _smooth_path(rng, n_frames, fps, np.deg2rad(6), 0.6)
        self.head_squash = 1 + _smooth_path(rng, n_frames, fps, 0.05, 0.5)
        self.blink = self._blinks(rng)

    # Pixels are made on first use, so motion-only questions (face boxes) stay cheap.
    @cached_property
    def background(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0xB6])
        return _background(rng, int(self.w * (1 + 2 * MARGIN)), int(self.h * (1 + 2 * MARGIN)))

    @cached_property
    def light(self) -> np.ndarray:
        """Scene light as uint8 gain x LIGHT_ONE, for cv2's fast saturating multiply."""
        rng = np.random.default_rng([self.seed, 0x116])
        gain = light_field(self.w, self.h, self.light_angle, rng.uniform(0.15, 0.4), 1 + rng.uniform(-0.07, 0.07, 3),
                           rng.uniform(0.85, 1.1))
        return np.clip(np.rint(gain * LIGHT_ONE), 0, 255).astype(np.uint8)

    @cached_property
    def noise(self) -> list[np.ndarray]:
        """A few sensor-noise frames, cycled (drawing fresh noise per frame costs more than the rest)."""
        rng = np.random.default_rng([self.seed, 0x0015E])
        return [np.rint(rng.standard_normal((self.h, self.w, 3), dtype=np.float32) * self.noise_sigma).astype(np.int16)
                for _ in range(5)]

    @cached_property
    def noise_order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, 0x0015F]).integers(0, 5, self.n)

    def _blinks(self, rng: np.random.Generator) -> np.ndarray:
        out = np.zeros(self.n, np.float32)
        t = rng.uniform(0.2, 2.0)
        times = np.arange(self.n) / self.fps
        while t < self.n / self.fps:
            dur = rng.uniform(0.14, 0.26)
            x = (times - t) / dur
            inside = (x >= 0) & (x <= 1)
            out[inside] = np.maximum(out[inside], np.sin(np.pi * x[inside]) ** 0.6)
            t += dur + rng.uniform(1.5, 4.5)
        return out

    def affine(self, i: int) -> np.ndarray:
        """Where the head canvas goes in frame i: 2x3 canvas -> frame."""
        s, r, q = self.head_scale[i], self.head_roll[i], self.head_squash[i]
        c, sn = np.cos(r), np.sin(r)
        lin = np.array([[c, -sn], [sn, c]]) @ np.diag([s * q, s])
        t = np.array([self.head_x[i], self.head_y[i]]) - lin @ FACE_CENTRE
        return np.hstack([lin, t[:, None]])

    def face_box(self, identity: Identity, i: int) -> np.ndarray:
        """x1, y1, x2, y2 of the face box a detector should report in frame i."""
        a = self.affine(i)
        pts = identity.box @ a[:, :2].T + a[:, 2]
        return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])

    def state(self, i: int, mouth: np.ndarray) -> FaceState:
        return FaceState(mouth=float(mouth[i]), blink=float(self.blink[i]))

    def shading(self, identity: Identity, light: FaceLight | None = None) -> np.ndarray:
        """`identity.shading` under `light` (default: this scene's), computed once per person and light."""
        key = (identity.name, light or self.face_light)
        if key not in self._shading:
            self._shading[key] = identity.shading(key[1])
        return self._shading[key]

    def lit_face(self, identity: Identity, state: FaceState) -> tuple[np.ndarray, np.ndarray]:
        """The head canvas (uint8) and alpha, shaded by this scene's light."""
        rgb, alpha = identity.render(state)
        lit = rgb.astype(np.float32) * self.shading(identity)[..., None]
        return np.clip(np.rint(lit), 0, 255).astype(np.uint8), alpha

    def backdrop(self, i: int) -> np.ndarray:
        """The background as the camera sees it in frame i (uint8)."""
        z = self.cam_zoom[i]
        cx = self.background.shape[1] / 2 + self.cam_x[i]
        cy = self.background.shape[0] / 2 + self.cam_y[i]
        m = np.array([[z, 0, self.w / 2 - z * cx], [0, z, self.h / 2 - z * cy]])
        return cv2.warpAffine(self.background, m, (self.w, self.h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def compose(self, i: int, identity: Identity, state: FaceState, affine: np.ndarray) -> np.ndarray:
        """Unlit composite (uint8): backdrop, body, head."""
        frame = self.backdrop(i)
        s = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
        neck = affine[:, :2] @ NECK_BOTTOM + affine[:, 2]
        d = EYE_DIST * s
        body_c = (int(neck[0]), int(neck[1] + 1.5 * d))
        shade = np.array(identity.clothing, np.float32)
        # Shoulders: a wide rounded torso, a little darker at the sides, and a collar under the neck.
        cv2.ellipse(frame, body_c, (int(2.6 * d), int(2.0 * d)), 0, 0, 360, (shade * 0.85).tolist(), -1, cv2.LINE_AA)
        cv2.ellipse(frame, (body_c[0], body_c[1] + int(0.3 * d)), (int(1.9 * d), int(1.9 * d)), 0, 0, 360,
                    shade.tolist(), -1, cv2.LINE_AA)
        collar = np.array([[neck[0] - 0.55 * d, neck[1] - 0.5 * d], [neck[0] + 0.55 * d, neck[1] - 0.5 * d],
                           [neck[0], neck[1] + 0.6 * d]], np.int32)
        cv2.fillConvexPoly(frame, collar, (shade * 0.6).tolist(), cv2.LINE_AA)
        rgb, alpha = self.lit_face(identity, state)
        paste_layer(frame, rgb, alpha, affine)
        return frame

    def finish(self, i: int, composite: np.ndarray, roi: tuple[int, int, int, int] | None = None,
               gain: np.ndarray | None = None) -> np.ndarray:
        """Scene light and sensor noise on an unlit uint8 composite -> the frame (or the `roi` part of it).

        `gain` (float32, roi-sized) is extra light on top of the scene's, for fakes; where it is 1 the
        result is bit-identical to the real frame's, since the same saturating cv2 operations run.
        """
        x1, y1, x2, y2 = roi if roi is not None else (0, 0, self.w, self.h)
        lit = cv2.multiply(composite, self.light[y1:y2, x1:x2], scale=1.0 / LIGHT_ONE, dtype=cv2.CV_8U)
        if gain is not None:
            lit = np.clip(np.rint(lit * gain), 0, 255).astype(np.uint8)
        return cv2.add(lit, self.noise[self.noise_order[i]][y1:y2, x1:x2], dtype=cv2.CV_8U)


def layer_roi(affine: np.ndarray, w: int, h: int, pad: int = 2, box: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
    """Frame rectangle (x1, y1, x2, y2) covered by the canvas (or a canvas `box` of 4 corners)."""
    corners = box if box is not None else np.array([[0, 0], [CANVAS_W, 0], [CANVAS_W, CANVAS_H], [0, CANVAS_H]], float)
    pts = corners @ affine[:, :2].T + affine[:, 2]
    x1, y1 = np.floor(pts.min(0)).astype(int) - pad
    x2, y2 = np.ceil(pts.max(0)).astype(int) + pad
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 <= x1 or y2 <= y1:
        return None
    return int(x1), int(y1), int(x2), int(y2)


def warp_to_roi(img: np.ndarray, affine: np.ndarray, roi: tuple[int, int, int, int], flags=cv2.INTER_LINEAR) -> np.ndarray:
    x1, y1, x2, y2 = roi
    m = affine.copy()
    m[:, 2] -= (x1, y1)
    return cv2.warpAffine(img, m, (x2 - x1, y2 - y1), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def paste_layer(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, affine: np.ndarray) -> None:
    """Alpha-blend a canvas layer into the uint8 frame in place."""
    h, w = frame.shape[:2]
    roi = layer_roi(affine, w, h)
    if roi is None:
        return
    x1, y1, x2, y2 = roi
    col = warp_to_roi(rgb, affine, roi).astype(np.float32)
    a = warp_to_roi(alpha, affine, roi)[..., None]
    frame[y1:y2, x1:x2] = np.rint(frame[y1:y2, x1:x2] * (1 - a) + col * a).astype(np.uint8)
