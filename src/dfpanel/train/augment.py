"""Augmentation of cached crops before a specialist's view cuts its input from them.

Transforms are albumentations classes declared per stage in YAML (`augment.transforms`). They run on
the stored context crops, and the face box and landmarks of each frame move with the pixels, so a
view that cuts the face or the mouth from the crop still finds it. All frames of one sample (a clip)
get the same random draw, so augmentation never invents flicker between frames.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from dfpanel.errors import ConfigError
from dfpanel.extract.cache import EditedEntry, FaceTrackEntry


class AugmentedEntry(EditedEntry):
    """A FaceTrackEntry whose crops at some positions were replaced (and whose meta moved with them)."""

    def __init__(self, base: FaceTrackEntry, meta, crops: dict[int, np.ndarray]):
        super().__init__(base, meta=meta, crops=crops)


def build_transform(specs: Sequence[dict]):
    """An albumentations Compose from `[{name: HorizontalFlip, p: 0.5}, ...]`; None when empty."""
    if not specs:
        return None
    import albumentations as A

    steps = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("name")
        cls = getattr(A, name, None)
        if cls is None or not isinstance(cls, type):
            raise ConfigError(f"augment.transforms[{i}]: {name!r} is not an albumentations transform")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        try:
            steps.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"augment.transforms[{i}] {name}: bad arguments ({str(exc).splitlines()[0]})") from None
    return A.Compose(
        steps,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=[], min_visibility=0.0),
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )


class CropAugmenter:
    """Applies one stage's transforms to the crops of one sample (frame or clip)."""

    def __init__(self, specs: Sequence[dict]):
        self.specs = list(specs)
        self.transform = build_transform(self.specs)

    def __bool__(self) -> bool:
        return self.transform is not None

    def __call__(self, entry: FaceTrackEntry, positions: Sequence[int], seed: int,
                 masks: dict[int, np.ndarray] | None = None):
        """The augmented entry; with `masks` (position -> float HxW in crop pixels, a pseudo-fake's
        blend mask), `(entry, masks)` with the masks moved by the same geometric transforms (colour
        transforms leave them alone), so a mask target stays on the pixels it describes."""
        if self.transform is None:
            return entry if masks is None else (entry, masks)
        frames = list(entry.meta.frames)
        crops: dict[int, np.ndarray] = {}
        moved_masks: dict[int, np.ndarray] = {}
        for pos in positions:
            self.transform.set_random_seed(seed)  # the same draw for every frame of the sample
            mask = None if masks is None else masks.get(pos)
            crops[pos], frames[pos], out_mask = self._one(entry.crop(pos), frames[pos], mask)
            if out_mask is not None:
                moved_masks[pos] = out_mask
        meta = dataclasses.replace(entry.meta, frames=frames)
        out = AugmentedEntry(entry, meta, crops)
        return out if masks is None else (out, moved_masks)

    def _one(self, crop: np.ndarray, frame, mask: np.ndarray | None = None):
        h, w = crop.shape[:2]
        ox, oy = frame.crop_box[0], frame.crop_box[1]
        x0, y0, x1, y1 = frame.box
        local = [max(0.0, x0 - ox), max(0.0, y0 - oy), min(float(w), x1 - ox), min(float(h), y1 - oy)]
        bboxes = [local] if local[2] > local[0] and local[3] > local[1] else []
        kps = np.asarray(frame.landmarks, dtype=np.float32).reshape(-1, 2) - np.array([ox, oy], dtype=np.float32)
        extra = {} if mask is None else {"mask": np.asarray(mask, dtype=np.float32)}
        out = self.transform(image=crop, bboxes=bboxes, keypoints=kps, **extra)
        image = np.ascontiguousarray(out["image"])
        nh, nw = image.shape[:2]
        box = list(frame.box)
        if len(out["bboxes"]):
            bx = np.asarray(out["bboxes"][0], dtype=np.float64)
            box = [float(bx[0] + ox), float(bx[1] + oy), float(bx[2] + ox), float(bx[3] + oy)]
        landmarks = (np.asarray(out["keypoints"], dtype=np.float64)[:, :2] + [ox, oy]).tolist()
        moved = dataclasses.replace(
            frame, box=box, landmarks=landmarks, crop_box=[ox, oy, ox + nw, oy + nh]
        )
        return image, moved, (None if mask is None else np.asarray(out["mask"], dtype=np.float32))
