"""Faces: many identities made from the two real face photos that ship inside installed packages.

scikit-image ships `astronaut.png` (Eileen Collins) and matplotlib ships `grace_hopper.jpg`. Each is
aligned by its eyes onto a fixed *canvas* (CANVAS_W x CANVAS_H pixels, eyes at CANVAS_EYES), cut out
with a head mask, and then varied per identity: mirrored, warped (face width, eye spacing, nose and
jaw length, head size), recoloured (skin tone, brightness, contrast). Real photos are used rather than a
drawn face because every frame must be found by a real detector (MTCNN).

An `Identity` renders itself with a mouth opening (jaw drops, dark mouth interior appears) and eyelid
closure (blink); everything is numpy/cv2 on the small canvas, so a frame costs well under a millisecond.

Light: each photo keeps the light it was taken in, which on the astronaut photo changes the face's
brightness about as much as a relit fake does, in a direction unrelated to the scene it is put in. So
the photo's own light is divided out when it is aligned (`_delight`), and an identity is lit by the
scene it stands in (`Identity.shading`: Lambert shading of a head-shaped ellipsoid and a neck
cylinder), as a real face is lit by the room's light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

CANVAS_W, CANVAS_H = 208, 240
CANVAS_EYES = np.array([[79.0, 104.0], [129.0, 104.0]])  # left eye, right eye (image left/right)
FACE_ELLIPSE = ((104.0, 130.0), (50.0, 62.0))  # centre, half-axes of the face (skin, brows to chin) on the canvas
EYE_DIST = float(CANVAS_EYES[1, 0] - CANVAS_EYES[0, 0])


@dataclass(frozen=True)
class _BasePhoto:
    """Where things are in one source photo (found once with facenet-pytorch's MTCNN, then fixed here)."""

    name: str
    box: tuple[float, float, float, float]  # MTCNN face box x1, y1, x2, y2 in the photo
    landmarks: tuple[tuple[float, float], ...]  # eye L, eye R, nose, mouth L, mouth R in the photo
    head_ellipse: tuple[tuple[float, float], tuple[float, float]]  # centre, half-axes on the canvas
    neck: tuple[float, float, float, float]  # x1, y1, x2, y2 of the neck/collar on the canvas
    background_points: tuple[tuple[int, int], ...]  # canvas points showing the photo's backdrop


_BASES = (
    _BasePhoto(
        name="astronaut",
        box=(180.3, 60.7, 268.4, 172.2),
        landmarks=((205.4, 101.5), (246.9, 103.1), (225.1, 129.2), (201.2, 139.6), (245.1, 141.1)),
        head_ellipse=((105.0, 92.0), (86.0, 88.0)),
        neck=(74.0, 150.0, 136.0, 232.0),
        background_points=((4, 4), (203, 4), (4, 150), (203, 150)),
    ),
    _BasePhoto(
        name="grace_hopper",
        box=(163.7, 105.8, 347.6, 344.0),
        landmarks=((220.3, 189.9), (308.5, 187.1), (269.2, 238.9), (230.4, 282.6), (306.8, 279.6)),
        head_ellipse=((103.0, 102.0), (64.0, 94.0)),
        neck=(72.0, 170.0, 136.0, 232.0),
        background_points=((200, 40), (200, 120), (203, 160), (4, 40), (20, 140)),
    ),
)
N_BASES = len(_BASES)


def _load_photo(name: str) -> np.ndarray:
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()[..., :3]
    import matplotlib.cbook
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity transform taking the two points `src` onto `dst`."""
    s, t = src[1] - src[0], dst[1] - dst[0]
    scale = np.linalg.norm(t) / np.linalg.norm(s)
    ang = np.arctan2(t[1], t[0]) - np.arctan2(s[1], s[0])
    c, sn = scale * np.cos(ang), scale * np.sin(ang)
    m = np.array([[c, -sn, 0.0], [sn, c, 0.0]])
    m[:, 2] = dst[0] - m[:, :2] @ src[0]
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def _ellipse_mask(h: int, w: int, centre, axes) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return (((xx - centre[0]) / axes[0]) ** 2 + ((yy - centre[1]) / axes[1]) ** 2 <= 1.0).astype(np.float32)


def _delight(rgb: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The photo with its own light divided out: the log-luminance plane fitted over `face` made flat.

    A plane, not a shading model: it takes out the photo's key-light gradient (the astronaut photo's
    face gets 0.2 brighter in log-luminance per eye distance towards its light; 0.002 after) and keeps
    the face's own structure (eyes, brows, mouth are darker than skin whatever the light).
    """
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    ys, xs = np.nonzero(face > 0)
    a = np.stack([xs - CANVAS_W / 2, ys - CANVAS_H / 2, np.ones_like(xs)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, np.log(luma[ys, xs] + 1.0), rcond=None)
    yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float64)
    plane = coef[0] * (xx - CANVAS_W / 2) + coef[1] * (yy - CANVAS_H / 2)
    # Only the gradient goes; the exposure (the plane's value at the face's centre) stays.
    plane -= plane[ys, xs].mean()
    gain = np.clip(np.exp(-plane), 0.6, 1.6)[..., None]
    return np.clip(np.rint(rgb * gain), 0, 255).astype(np.uint8)


@dataclass
class _Aligned:
    rgb: np.ndarray  # canvas, uint8
    alpha: np.ndarray  # canvas, float32 0..1 (head + neck)
    landmarks: np.ndarray  # 5x2 canvas coords
    box: np.ndarray  # 4 corners (x,y) of the MTCNN box on the canvas


@lru_cache(maxsize=None)
def _aligned_base(index: int) -> _Aligned:
    base = _BASES[index]
    photo = _load_photo(base.name)
    lm = np.array(base.landmarks)
    m = _similarity(lm[:2], CANVAS_EYES)
    rgb = cv2.warpAffine(photo, m, (CANVAS_W, CANVAS_H), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    head = _ellipse_mask(CANVAS_H, CANVAS_W, *base.head_ellipse)
    x1, y1, x2, y2 = base.neck
    neck = np.zeros_like(head)
    neck[int(y1) : int(y2), int(x1) : int(x2)] = 1.0
    (cx, cy), (ax, ay) = base.head_ellipse
    core = _ellipse_mask(CANVAS_H, CANVAS_W, (cx, cy), (0.8 * ax, 0.8 * ay))
    # Drop the photo's own backdrop where it shows at the rim of the head ellipse (hair edges).
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    backdrop = np.zeros_like(head, dtype=bool)
    for x, y in base.background_points:
        backdrop |= np.linalg.norm(lab - lab[y, x], axis=2) < 14.0
    mask = np.maximum(head, neck)
    face = _ellipse_mask(CANVAS_H, CANVAS_W, *FACE_ELLIPSE)
    rgb = _delight(rgb, face)
    rim = (core == 0) & (neck == 0) & (face == 0)
    mask[backdrop & rim] = 0.0
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    # Fade the neck out towards the bottom so it merges into the drawn body.
    fade = np.clip((CANVAS_H - 6 - np.arange(CANVAS_H, dtype=np.float32)) / 30.0, 0.0, 1.0)[:, None]
    mask = cv2.GaussianBlur(mask, (0, 0), 2.0) * fade
    bx1, by1, bx2, by2 = base.box
    box = _apply(m, np.array([[bx1, by1], [bx2, by1], [bx2, by2], [bx1, by2]]))
    return _Aligned(rgb=rgb, alpha=mask.astype(np.float32), landmarks=_apply(m, lm), box=box)


@dataclass(frozen=True)
class FaceLight:
    """Light falling on a face: from `angle` in the image plane (radians, image axes: x right, y down),
    `elevation` above that plane towards the camera, with `ambient` of the light reaching every pixel."""

    angle: float
    elevation: float
    ambient: float

    @property
    def direction(self) -> np.ndarray:
        c = np.cos(self.elevation)
        return np.array([c * np.cos(self.angle), c * np.sin(self.angle), np.sin(self.elevation)])


def head_normals(landmarks: np.ndarray) -> np.ndarray:
    """Unit surface normals (CANVAS_H x CANVAS_W x 3; x right, y down, z to the camera) of a head shape.

    The head is an ellipsoid round the face (1.6 x 2.1 eye distances, centred a little below the
    eyes); below the chin it becomes a vertical cylinder, the neck. Beyond the ellipse's rim the normal
    lies in the image plane, as on a silhouette.
    """
    d = EYE_DIST
    eyes = (landmarks[0] + landmarks[1]) / 2
    mouth = (landmarks[3] + landmarks[4]) / 2
    cx, cy = eyes[0], eyes[1] + 0.2 * d
    yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
    u, v = (xx - cx) / (1.6 * d), (yy - cy) / (2.1 * d)
    r = np.sqrt(u * u + v * v)
    scale = np.maximum(r, 1.0)
    u, v = u / scale, v / scale
    head = np.stack([u, v, np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, 1.0))], axis=-1)
    n = np.clip((xx - cx) / (0.8 * d), -1.0, 1.0)
    neck = np.stack([n, np.zeros_like(n), np.sqrt(1.0 - n * n)], axis=-1)
    chin_y = mouth[1] + 0.62 * d
    w = np.clip((yy - chin_y) / (0.3 * d), 0.0, 1.0)[..., None]  # head above the chin, neck below
    out = head * (1 - w) + neck * w
    return (out / np.linalg.norm(out, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class FaceState:
    """What the face is doing in one frame."""

    mouth: float = 0.0  # 0 closed .. 1 wide open
    blink: float = 0.0  # 0 open eyes .. 1 closed


@dataclass
class Identity:
    """One synthetic person: a head canvas plus everything needed to animate it."""

    name: str
    rgb: np.ndarray  # CANVAS_H x CANVAS_W x 3 uint8
    alpha: np.ndarray  # CANVAS_H x CANVAS_W float32, head + neck
    landmarks: np.ndarray  # 5x2: eye L, eye R, nose, mouth L, mouth R (canvas coords)
    box: np.ndarray  # 4x2 corners of the face box a detector reports (canvas coords)
    inner: np.ndarray  # float32 feathered mask of the inner face (brows to chin), where swaps blend
    clothing: tuple[int, int, int]
    voice_f0: float  # Hz, for the speech this person speaks
    _jaw: np.ndarray = field(default=None, repr=False)  # per-pixel weight of the jaw drop
    _grid: tuple = field(default=None, repr=False)

    def __post_init__(self) -> None:
        lm = self.landmarks
        mouth_c = (lm[3] + lm[4]) / 2
        self.mouth_width = float(np.linalg.norm(lm[4] - lm[3]))
        self.mouth_centre = mouth_c
        chin_y = mouth_c[1] + 0.62 * EYE_DIST
        yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
        below = np.clip((yy - mouth_c[1] + 1.0) / 4.0, 0.0, 1.0)
        across = np.exp(-(((xx - mouth_c[0]) / (0.95 * self.mouth_width)) ** 4))
        fade = np.clip(1.0 - (yy - chin_y) / (0.55 * EYE_DIST), 0.0, 1.0)
        self._jaw = (below * across * fade).astype(np.float32)
        self._grid = (xx, yy)
        # Eyelid colour: the skin between eye and brow.
        self._lids = []
        for eye in lm[:2]:
            x, y = int(eye[0]), int(eye[1] - 0.26 * EYE_DIST)
            patch = self.rgb[y - 2 : y + 2, x - 4 : x + 4].reshape(-1, 3)
            self._lids.append(np.median(patch, axis=0).astype(np.float32))

    def shading(self, light: FaceLight) -> np.ndarray:
        """Canvas gain (float32) of this head under `light`: ambient + Lambert, mean 1 over the inner face,
        so light changes where the face is bright, not how bright it is on the whole."""
        lambert = np.clip(head_normals(self.landmarks) @ light.direction.astype(np.float32), 0.0, 1.0)
        gain = light.ambient + (1.0 - light.ambient) * lambert
        return (gain / ((gain * self.inner).sum() / self.inner.sum())).astype(np.float32)

    def render(self, state: FaceState) -> tuple[np.ndarray, np.ndarray]:
        """The canvas (uint8 RGB) and its alpha with this mouth opening and eyelid closure."""
        rgb = self.rgb
        open_px = float(np.clip(state.mouth, 0.0, 1.0)) * 0.30 * self.mouth_width
        if open_px > 0.3:
            xx, yy = self._grid
            rgb = cv2.remap(rgb, xx, yy - open_px * self._jaw, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            rgb = self._draw_mouth(rgb, open_px)
        if state.blink > 0.05:
            rgb = self._draw_lids(rgb if rgb is not self.rgb else rgb.copy(), state.blink)
        return rgb, self.alpha

    def _draw_mouth(self, rgb: np.ndarray, open_px: float) -> np.ndarray:
        mx, my = self.mouth_centre
        half_w = 0.40 * self.mouth_width
        x1, x2 = int(mx - half_w - 3), int(mx + half_w + 4)
        y1, y2 = int(my - 3), int(my + open_px + 4)
        yy, xx = np.mgrid[y1:y2, x1:x2].astype(np.float32)
        cy = my + open_px / 2
        r = ((xx - mx) / half_w) ** 2 + ((yy - cy) / max(open_px / 2, 0.6)) ** 2
        a = np.clip((1.0 - r) * 2.5, 0.0, 1.0)[..., None] * 0.92
        depth = np.clip((yy - my) / max(open_px, 1.0), 0.0, 1.0)[..., None]
        inside = np.array([70.0, 22.0, 28.0]) * (1.0 - 0.6 * depth) + 8.0
        roi = rgb[y1:y2, x1:x2].astype(np.float32)
        rgb[y1:y2, x1:x2] = (roi * (1 - a) + inside * a).astype(np.uint8)
        return rgb

    def _draw_lids(self, rgb: np.ndarray, closure: float) -> np.ndarray:
        half_w, half_h = 0.27 * EYE_DIST, 0.14 * EYE_DIST
        for eye, lid in zip(self.landmarks[:2], self._lids):
            ex, ey = eye
            x1, x2 = int(ex - half_w - 2), int(ex + half_w + 3)
            y1, y2 = int(ey - half_h - 2), int(ey + half_h + 3)
            yy, xx = np.mgrid[y1:y2, x1:x2].astype(np.float32)
            in_eye = np.clip((1.0 - ((xx - ex) / half_w) ** 2 - ((yy - ey) / half_h) ** 2) * 3.0, 0.0, 1.0)
            edge = ey - half_h + 2 * half_h * closure
            covered = np.clip((edge - yy) / 1.5 + 0.5, 0.0, 1.0)
            a = (in_eye * covered)[..., None]
            lash = (np.exp(-(((yy - edge) / 1.2) ** 2)) * in_eye * min(1.0, closure * 1.5))[..., None]
            roi = rgb[y1:y2, x1:x2].astype(np.float32)
            out = roi * (1 - a) + lid * 0.86 * a
            out = out * (1 - 0.7 * lash)
            rgb[y1:y2, x1:x2] = np.clip(out, 0, 255).astype(np.uint8)
        return rgb


def _rbf_warp(rng: np.random.Generator, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, callable]:
    """A smooth random face-shape change: remap grids and a function moving points the same way."""
    d = EYE_DIST
    mouth = (lm[3] + lm[4]) / 2
    mid = (lm[0] + lm[1]) / 2
    ctrl, vec, sig = [], [], []
    width = rng.uniform(-0.09, 0.09) * d  # cheeks/jaw out or in
    for side in (-1, 1):
        ctrl.append([mid[0] + side * 0.95 * d, mouth[1]])
        vec.append([side * width, 0.0])
        sig.append(0.45 * d)
    spread = rng.uniform(-0.05, 0.05) * d  # eye spacing
    for side, eye in zip((-1, 1), lm[:2]):
        ctrl.append(eye)
        vec.append([side * spread, rng.uniform(-0.03, 0.03) * d])
        sig.append(0.28 * d)
    ctrl.append(mouth)
    vec.append([0.0, rng.uniform(-0.07, 0.07) * d])  # nose length
    sig.append(0.35 * d)
    ctrl.append([mouth[0], mouth[1] + 0.62 * d])
    vec.append([0.0, rng.uniform(-0.08, 0.10) * d])  # chin length
    sig.append(0.4 * d)
    ctrl.append([mid[0], mid[1] - 1.2 * d])
    vec.append([rng.uniform(-0.04, 0.04) * d, rng.uniform(-0.10, 0.06) * d])  # crown / hair
    sig.append(0.8 * d)
    ctrl, vec, sig = np.array(ctrl), np.array(vec), np.array(sig)

    def disp(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = np.zeros_like(x)
        dy = np.zeros_like(y)
        for (cx, cy), (vx, vy), s in zip(ctrl, vec, sig):
            w = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
            dx += vx * w
            dy += vy * w
        return dx, dy

    yy, xx = np.mgrid[0:CANVAS_H, 0:CANVAS_W].astype(np.float32)
    dx, dy = disp(xx, yy)

    def move(pts: np.ndarray) -> np.ndarray:
        px, py = disp(pts[:, 0], pts[:, 1])
        return np.stack([pts[:, 0] + px, pts[:, 1] + py], axis=1)

    return (xx - dx).astype(np.float32), (yy - dy).astype(np.float32), move


CLOTHING = ((38, 52, 86), (92, 28, 34), (30, 30, 32), (210, 205, 195), (46, 86, 60), (120, 96, 70), (70, 70, 90))


def make_identity(seed: int, name: str | None = None) -> Identity:
    """A deterministic person for this seed."""
    rng = np.random.default_rng([seed, 0x1D])
    base = _aligned_base(int(rng.integers(N_BASES)))
    rgb, alpha, lm, box = base.rgb.copy(), base.alpha.copy(), base.landmarks.copy(), base.box.copy()
    if rng.random() < 0.5:  # mirror: left/right eye and mouth corners swap roles
        rgb, alpha = rgb[:, ::-1].copy(), alpha[:, ::-1].copy()
        lm[:, 0] = CANVAS_W - 1 - lm[:, 0]
        lm = lm[[1, 0, 2, 4, 3]]
        box[:, 0] = CANVAS_W - 1 - box[:, 0]
    mx, my, move = _rbf_warp(rng, lm)
    rgb = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lm, box = move(lm), move(box)
    # Skin tone and exposure in Lab: brightness gain, warmth, redness, contrast.
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    mean_l = lab[..., 0].mean()
    lab[..., 0] = (lab[..., 0] - mean_l) * rng.uniform(0.85, 1.15) + mean_l * rng.uniform(0.72, 1.1)
    lab[..., 1] += rng.uniform(-5, 7)
    lab[..., 2] += rng.uniform(-7, 9)
    rgb = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    mouth = (lm[3] + lm[4]) / 2
    eyes_y = (lm[0, 1] + lm[1, 1]) / 2
    top, bottom = eyes_y - 0.5 * EYE_DIST, mouth[1] + 0.6 * EYE_DIST
    inner = _ellipse_mask(
        CANVAS_H, CANVAS_W, ((lm[0, 0] + lm[1, 0]) / 2, (top + bottom) / 2), (0.98 * EYE_DIST, (bottom - top) / 2)
    )
    inner = cv2.GaussianBlur(inner, (0, 0), 2.5)
    clothing = CLOTHING[int(rng.integers(len(CLOTHING)))]
    clothing = tuple(int(np.clip(c * rng.uniform(0.8, 1.2), 0, 255)) for c in clothing)
    return Identity(
        name=name or f"id{seed}",
        rgb=rgb,
        alpha=alpha,
        landmarks=lm,
        box=box,
        inner=inner.astype(np.float32),
        clothing=clothing,
        voice_f0=float(rng.uniform(95, 230)),
    )
