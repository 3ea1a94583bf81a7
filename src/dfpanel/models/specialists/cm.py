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


# ---- what augmentation CM can train with (see cm_augment_refusal) ----------------------------------

CM_RESAMPLING = frozenset({
    "Resize", "RandomResizedCrop", "RandomSizedCrop", "RandomScale", "LongestMaxSize", "SmallestMaxSize",
    "Downscale", "ImageCompression", "JpegCompression", "Affine", "ShiftScaleRotate", "Rotate", "SafeRotate",
    "Perspective", "ElasticTransform", "GridDistortion", "OpticalDistortion", "RandomSizedBBoxSafeCrop",
    "PiecewiseAffine", "ThinPlateSpline", "GridElasticDeform", "Mosaic",
})
CM_GRID_MOVES = frozenset({
    "HorizontalFlip", "VerticalFlip", "Flip", "Transpose", "RandomRotate90", "D4", "SquareSymmetry",
    "CubicSymmetry", "TimeReverse", "RandomCrop", "CenterCrop", "Crop", "Pad", "PadIfNeeded", "CropAndPad",
    "RandomCropFromBorders", "RandomCropNearBBox", "BBoxSafeRandomCrop", "AtLeastOneBBoxRandomCrop",
    "CropNonEmptyMaskIfExists", "RandomGridShuffle",
})
CM_TONE_AND_COLOUR = frozenset({
    "RandomBrightnessContrast", "RandomBrightness", "RandomContrast", "RandomGamma", "ColorJitter",
    "HueSaturationValue", "RGBShift", "CLAHE", "Equalize", "AutoContrast", "RandomToneCurve", "ToGray",
    "ToSepia", "FancyPCA", "ChannelShuffle", "ChannelDropout", "InvertImg", "Solarize", "Posterize",
    "PlanckianJitter", "Illumination", "PlasmaBrightnessContrast", "PlasmaShadow", "HistogramMatching",
    "FDA", "PixelDistributionAdaptation", "HEStain", "ChromaticAberration",
})
CM_FILTERS = frozenset({
    "GaussNoise", "ISONoise", "MultiplicativeNoise", "AdditiveNoise", "ShotNoise", "SaltAndPepper",
    "Blur", "GaussianBlur", "MedianBlur", "MotionBlur", "GlassBlur", "AdvancedBlur", "Defocus", "ZoomBlur",
    "Sharpen", "UnsharpMask", "Emboss", "RingingOvershoot", "Superpixels", "Morphological",
})
CM_OCCLUSION = frozenset({
    "CoarseDropout", "ConstrainedCoarseDropout", "Erasing", "GridDropout", "XYMasking", "PixelDropout",
    "MaskDropout", "TimeMasking", "FrequencyMasking", "OverlayElements", "TextImage", "RandomFog",
    "RandomRain", "RandomShadow", "RandomSnow", "RandomSunFlare", "RandomGravel", "Spatter",
})
CM_KEEPS_TRACES = frozenset({"NoOp", "ToRGB"})


def _fixed_multiple_of_8(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value % BLOCK == 0


def _identity(value, neutral: float) -> bool:
    if value is None:
        return True
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, dict):
        values = [v for vs in value.values() for v in (vs if isinstance(vs, (list, tuple)) else [vs])]
    return all(isinstance(v, (int, float)) and float(v) == neutral for v in values)


def keeps_block_grid(transform: dict) -> bool:
    """True for the grid-moving or resampling transforms whose arguments keep the 8x8 grid in place: a
    Crop or Pad at fixed multiples of 8, PadIfNeeded padding only right and below, an Affine that only
    shifts by fixed multiples of 8 pixels."""
    name, args = transform.get("name"), transform
    if name == "Crop":
        return _fixed_multiple_of_8(args.get("x_min", 0)) and _fixed_multiple_of_8(args.get("y_min", 0))
    if name == "Pad":
        pad = args.get("padding", 0)
        if isinstance(pad, (list, tuple)) and len(pad) in (2, 4):
            return all(_fixed_multiple_of_8(p) for p in pad[:2])  # (left, top[, right, bottom]) or (x, y)
        return _fixed_multiple_of_8(pad)
    if name == "PadIfNeeded":
        return args.get("position") == "top_left"
    if name == "Affine":
        shift = args.get("translate_px")
        shifts = list(shift.values()) if isinstance(shift, dict) else [shift]
        return (shift is not None and all(_fixed_multiple_of_8(v) for v in shifts)
                and args.get("translate_percent") is None and _identity(args.get("scale"), 1.0)
                and _identity(args.get("rotate"), 0.0) and _identity(args.get("shear"), 0.0))
    return False


def cm_augment_refusal(transform: dict, flags: dict[str, bool]) -> str | None:
    """Why CM refuses the augmentation `transform` ({"name": albumentations class, **arguments}), or None.

    CM reads two traces a codec leaves in the luma of a decoded frame: the 8x8 block grid (where block
    boundaries fall; the view snaps its window to the grid from the crop's position in the frame,
    crop_box % 8) and the quantisation lattice (inside a block, DCT coefficients sit on multiples of the
    codec's step sizes; the high ones are mostly zero). A real video is changed (lit, coloured, blurred,
    mirrored, cropped) BEFORE it is encoded, so its decoded frames always carry an intact grid and lattice.
    Augmenting the decoded crops instead shows CM frames no codec ever wrote, and either erases the trace
    or, worse, fakes one on a real face. So, by class of albumentations transform:

      - Resampling and recompression (Resize, *Crop with a resize, Rotate, Affine, Perspective, distortions,
        ImageCompression, Downscale): interpolation mixes pixels across block boundaries and re-samples the
        grid at another scale or angle; recompression re-quantises on a new lattice. Re-scaling and
        re-encoding do happen to real videos after the fact (re-uploads), so a stage may opt in to learn
        robustness to them with `augment.allow_resample: true`. An Affine that only shifts by fixed
        multiples of 8 pixels (no scale, rotation or shear) copies whole blocks and is accepted.
      - Moving the grid (flips, transposes, 90-degree rotations, crops and pads at offsets that are not
        multiples of 8, grid shuffles): pixel values survive but the blocks no longer start where the
        crop's position says, so CM's window straddles block boundaries. A flip mirrors column x to w-1-x,
        which lands the boundaries on the stored grid only for some crop widths; it is refused outright.
        `Crop` and `Pad` at fixed multiples of 8, and `PadIfNeeded` at position top_left, keep the grid.
      - Tone and colour (brightness, contrast, gamma, tone curves, equalisation, CLAHE, hue, saturation,
        colour jitter, channel shuffles, to-gray, sepia...): luma is Y = .299 R + .587 G + .114 B, so any of
        these changes it after quantisation: contrast scales the lattice (steps q become a*q), gamma and
        curves bend it, colour changes move Y; rounding back to 8 bits then smears it. (Gray adds nothing
        for CM, which reads luma already.)
      - Noise, blur, sharpening and other filters: noise fills the zeroed high-frequency coefficients,
        blur smooths away the steps at block boundaries, sharpening exaggerates them; each rewrites the
        very trace CM reads.
      - Occlusion and overlays (CoarseDropout, Erasing, GridDropout, masks, text, weather): they paste
        flat or foreign patches with no compression history, which is what CM learns to call fake, into
        samples labelled real.

    Any other transform is refused too (CM accepts only what it knows keeps both traces); the refusal names
    the transform and the reason, and is final except for the first class.
    """
    name = str(transform.get("name"))
    if name in CM_KEEPS_TRACES or keeps_block_grid(transform):
        return None
    if name in CM_RESAMPLING:
        if flags.get("allow_resample"):
            return None
        return ("resizes, resamples or recompresses CM's input (its 8x8 blocks and quantisation); remove it or "
                "set augment.allow_resample: true for this stage")
    if name in CM_GRID_MOVES:
        return ("moves the 8x8 block grid CM reads (flips are refused; crops, pads and shifts only at fixed "
                "multiples of 8); remove it")
    if name in CM_TONE_AND_COLOUR:
        return "changes luma after decoding, off the codec's quantisation lattice CM reads; remove it"
    if name in CM_FILTERS:
        return "rewrites the high frequencies and block edges CM reads (noise, blur, sharpening); remove it"
    if name in CM_OCCLUSION:
        return "pastes patches with no compression history into CM's input, a fake trace on real faces; remove it"
    return "is not known to keep CM's 8x8 block grid and quantisation lattice, so CM refuses it; remove it"


@register_specialist
class CMSpecialist(PanelSpecialist):
    name = "cm"
    pseudofakes = ("recompress",)
    order = 2
    title = "Compression history"
    color = "#2ca02c"
    looks_for = "the face carries a different compression history than the rest of the frame"
    sample_kind = "frame"
    module_channels = 40
    extra_config = {"cm_size": None, "face_scale": 1.3}

    @classmethod
    def augment_refusal(cls, transform: dict, flags: dict[str, bool]) -> str | None:
        return cm_augment_refusal(transform, flags)

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
