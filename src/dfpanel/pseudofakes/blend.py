"""`self_blend`: a Self-Blended Image (Shiohara & Yamasaki, CVPR'22) for BG and RR.

The face of a real crop is replaced, under a soft face mask, by a jittered copy of the same crop: its
colour shifted (per channel, brightness/contrast, hue/saturation), its frequencies changed (sharpened or
blurred), slightly moved and scaled, sometimes downscaled and scaled back up (RR's resampling trace),
sometimes lit from one side (relight-like). What is left is what a face swap leaves without another
identity: a colour/lighting mismatch and a blend boundary where the mask's edge is, and resampling inside.

One draw per sample: a clip gets the same jitter and mask shape on every frame.
"""

from __future__ import annotations

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
from dfpanel.pseudofakes.masks import (
    MASK_PARAMS,
    _uniform,
    draw_mask,
    face_geometry,
    render_mask,
)

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}
DOWN = ("area", "linear", "cubic", "nearest")
UP = ("linear", "cubic", "lanczos", "nearest")


def unique_positions(positions: Sequence[int]) -> list[int]:
    """Positions in order, each once (a short clip repeats its last frame)."""
    return list(dict.fromkeys(int(p) for p in positions))


def paste(base: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """base*(1-mask) + source*mask, rounded to uint8; where mask is 0 the base's pixels are kept bit-exact."""
    m = mask[..., None].astype(np.float32)
    mixed = np.clip(np.rint(base.astype(np.float32) * (1 - m) + source.astype(np.float32) * m), 0, 255).astype(np.uint8)
    return np.where(m > 0, mixed, base)


def affine_about(centre, angle_deg: float, scale: float, shift) -> np.ndarray:
    """2x3 matrix: rotate/scale about `centre`, then move by `shift` (pixels)."""
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle_deg), float(scale))
    m[:, 2] += np.asarray(shift, dtype=np.float64)
    return m


def draw_jitter(rng: np.random.Generator, o: dict) -> dict:
    d = {
        "colour_shift": [round(float(v), 4) for v in rng.uniform(-o["colour_shift"], o["colour_shift"], 3)],
        "brightness": round(float(rng.uniform(-o["brightness"], o["brightness"])), 4),
        "contrast": round(float(rng.uniform(1 - o["contrast"], 1 + o["contrast"])), 4),
        "hue_deg": round(float(rng.uniform(-o["hue_deg"], o["hue_deg"])), 3),
        "saturation": round(float(rng.uniform(1 - o["saturation"], 1 + o["saturation"])), 4),
        "frequency": str(rng.choice(["none", "sharpen", "blur"], p=[1 - o["frequency_p"], o["frequency_p"] / 2, o["frequency_p"] / 2])),
        "frequency_amount": round(float(rng.uniform(0.3, 1.0)), 4),
        "shift": [round(float(v), 4) for v in rng.uniform(-o["max_shift"], o["max_shift"], 2)],
        "scale": round(_uniform(rng, o["scale"]), 4),
        "resample": bool(rng.random() < o["resample_p"]),
        "resample_factor": round(_uniform(rng, o["resample_factor"]), 4),
        "down": str(rng.choice(DOWN)),
        "up": str(rng.choice(UP)),
        "renoise": bool(rng.random() < o["renoise_p"]),
        "noise_seed": int(rng.integers(2**31)),
        "relight": bool(rng.random() < o["relight_p"]),
        "relight_angle_deg": round(float(rng.uniform(0, 360)), 2),
        "relight_strength": round(_uniform(rng, o["relight_strength"]), 4),
        "blend_ratio": round(_uniform(rng, o["blend_ratio"]), 4),
    }
    if not d["resample"]:
        d.pop("resample_factor"), d.pop("down"), d.pop("up")
    if not d["relight"]:
        d.pop("relight_angle_deg"), d.pop("relight_strength")
    if not d["renoise"]:
        d.pop("noise_seed")
    return d


NOISE_BLUR = (9, 9)  # noise_sigma's blur kernel (sigma 1), named once so RESIDUAL_GAIN is computed for it


def noise_sigma(x: np.ndarray) -> np.ndarray:
    """Per-channel sensor-noise estimate of a float image: the robust (MAD) spread of its fine residual,
    x minus a sigma-1 blur, in units of the white noise that would give that spread."""
    r = (x - cv2.GaussianBlur(x, NOISE_BLUR, 1.0)).reshape(-1, x.shape[2])
    return 1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0) / RESIDUAL_GAIN


def _residual_gain() -> float:
    """std of (n - blur(n)) for unit white noise n, the blur being noise_sigma's sigma-1 Gaussian."""
    k = cv2.getGaussianKernel(NOISE_BLUR[0], 1.0)
    g = k @ k.T
    g[NOISE_BLUR[0] // 2, NOISE_BLUR[0] // 2] -= 1.0
    return float(np.sqrt((g ** 2).sum()))


RESIDUAL_GAIN = _residual_gain()


def jittered(crop: np.ndarray, box: np.ndarray, size: float, j: dict, pos: int = 0) -> np.ndarray:
    """The altered copy of one crop (float32 HxWx3, 0..255 range, unclipped in between)."""
    h, w = crop.shape[:2]
    x = crop.astype(np.float32) / 255.0
    before = noise_sigma(x) if j.get("renoise") else None
    # colour: per-channel shift, contrast about the mean, brightness
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * j["contrast"] + mean + j["brightness"] + np.asarray(j["colour_shift"], np.float32)
    x = np.clip(x, 0, 1)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float: H in degrees
    hsv[..., 0] = (hsv[..., 0] + j["hue_deg"]) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * j["saturation"], 0, 1)
    x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    # frequencies
    sigma = max(0.5, size / 80.0) * (0.5 + j["frequency_amount"])
    if j["frequency"] == "blur":
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    elif j["frequency"] == "sharpen":
        x = x + 1.5 * j["frequency_amount"] * (x - cv2.GaussianBlur(x, (0, 0), sigma))
    # geometry: small shift and scale about the face centre
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    m = affine_about(centre, 0.0, j["scale"], np.asarray(j["shift"]) * size)
    x = cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if j["resample"]:
        sw, sh = max(2, int(round(w * j["resample_factor"]))), max(2, int(round(h * j["resample_factor"])))
        small = cv2.resize(x, (sw, sh), interpolation=INTERPOLATIONS[j["down"]])
        x = cv2.resize(small, (w, h), interpolation=INTERPOLATIONS[j["up"]])
    if before is not None:
        # Noise back to the crop's level: a generator that re-noises its face (or a camera that recorded
        # it) leaves no noise gap, so the copy must be told apart by its blurred texture and its seam.
        add = np.sqrt(np.maximum(before ** 2 - noise_sigma(x) ** 2, 0.0)).astype(np.float32)
        x = x + np.random.default_rng([j["noise_seed"], pos]).standard_normal(x.shape, dtype=np.float32) * add
    if j["relight"]:
        a = np.deg2rad(j["relight_angle_deg"])
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx - centre[0]) * np.cos(a) + (yy - centre[1]) * np.sin(a)) / max(size, 1.0)
        x = x * np.clip(1 + j["relight_strength"] * ramp, 0.3, 1.7)[..., None]
    return np.clip(x, 0, 1) * 255.0


@register_pseudofake
class SelfBlend(PseudoFakeGenerator):
    name = "self_blend"
    traces = ("face_swap", "relight")
    sample_kind = "frame"  # works on clips too (one draw for every frame)
    params = {
        "colour_shift": 0.06,  # per-channel shift, up to, of full scale
        "brightness": 0.08,
        "contrast": 0.15,  # contrast factor in 1 +- this
        "hue_deg": 8.0,
        "saturation": 0.2,
        "frequency_p": 0.6,  # chance of a sharpen or blur (half each)
        "max_shift": 0.03,  # affine shift, up to, in face sizes
        "scale": (0.95, 1.05),
        "resample_p": 0.5,  # chance of the down-then-up resize (RR's trace)
        "resample_factor": (0.5, 0.9),
        "renoise_p": 0.0,  # chance of sensor noise put back on the copy, to the crop's own level
        "relight_p": 0.3,  # chance of a directional light gradient on the source
        "relight_strength": (0.15, 0.35),  # gain change per face size along the light direction
        "blend_ratio": (0.6, 1.0),  # mask scaled by this
        **MASK_PARAMS,
    }

    def make(self, entry: FaceTrackEntry, positions: Sequence[int], rng: np.random.Generator,
             donor: DonorFn | None = None) -> PseudoFake:
        spec = draw_mask(rng, self.options)
        jitter = draw_jitter(rng, self.options)
        edits, masks = {}, {}

        def blend(layer, pos):
            crop = layer.image
            box, lm, size = face_geometry(layer.frame)
            mask = render_mask(crop.shape[:2], box, lm, spec) * np.float32(jitter["blend_ratio"])
            if layer.name == "context":
                masks[pos] = mask.astype(np.float32)
            return paste(crop, jittered(crop, box, size, jitter, pos), mask)

        for pos in unique_positions(positions):  # the context crop, and native pixels when stored apart
            edits[pos] = edit_layers(entry, pos, lambda layer, pos=pos: blend(layer, pos))
        return PseudoFake(EditedEntry.from_layers(entry, edits), masks, {"mask": spec, **jitter})
