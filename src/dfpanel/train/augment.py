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
from dfpanel.extract.cache import (
    EditedEntry,
    FaceTrackEntry,
    context_layer,
    face_layer,
    native_layer,
)
from dfpanel.extract.compact import scaled_size


class AugmentedEntry(EditedEntry):
    """A FaceTrackEntry whose crops at some positions were replaced (and whose meta moved with them)."""


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
    # The face box travels as its 4 corners (keypoints): albumentations' bbox bookkeeping cost ~0.6 ms
    # per call, more than the flip itself, and a box's corners give the same box under flips.
    return A.Compose(steps, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))


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
        edits: dict[int, dict[str, np.ndarray]] = {}
        moved_masks: dict[int, np.ndarray] = {}
        for pos in positions:
            mask = None if masks is None else masks.get(pos)
            self.transform.set_random_seed(seed)  # the same draw for every frame (and layer) of the sample
            compact = frames[pos].face_file is not None
            if compact and mask is None:
                # Compact: every view reads the face layer, so it is transformed now, and its flips move
                # the frame's geometry; the crop and native pixels follow when a view reads them.
                face, flips = self._follow(face_layer(entry, pos), seed)
                frames[pos] = _mirror_frame(frames[pos], flips)
                edits[pos] = {"context": lambda pos=pos: self._follow(context_layer(entry, pos), seed)[0], "face": face}
            elif compact:
                # With a blend mask (in crop pixels): the geometry and the mask from a stand-in of the
                # crop's shape; the crop itself is decoded only if a view reads it.
                _, frames[pos], out_mask = self._one(np.zeros(stored_shape(frames[pos]), np.uint8), frames[pos], mask)
                moved_masks[pos] = out_mask
                edits[pos] = {"context": lambda pos=pos: self._follow(context_layer(entry, pos), seed)[0],
                              "face": lambda pos=pos: self._follow(face_layer(entry, pos), seed)[0]}
            else:
                image, frames[pos], out_mask = self._one(entry.crop(pos), frames[pos], mask)
                edits[pos] = {"context": image}
                if out_mask is not None:
                    moved_masks[pos] = out_mask
            if frames[pos].native_file is not None:
                edits[pos]["native"] = lambda pos=pos: self._follow(native_layer(entry, pos), seed)[0]
        meta = dataclasses.replace(entry.meta, frames=frames)
        out = AugmentedEntry.from_layers(entry, edits, meta=meta)
        return out if masks is None else (out, moved_masks)

    def _one(self, crop: np.ndarray, frame, mask: np.ndarray | None = None):
        h, w = crop.shape[:2]
        ox, oy = frame.crop_box[0], frame.crop_box[1]
        s = float(frame.scale)  # crop px per source px (compact storage shrinks large faces)
        x0, y0, x1, y1 = ((np.asarray(frame.box, dtype=np.float64) - [ox, oy, ox, oy]) * s).tolist()
        box_corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
        kps = ((np.asarray(frame.landmarks, dtype=np.float64).reshape(-1, 2) - [ox, oy]) * s)
        n_lm = len(kps)
        crop_corners = np.array([[0.0, 0.0], [w, h]])  # which way the crop was flipped
        extra = {} if mask is None else {"mask": np.asarray(mask, dtype=np.float32)}
        # Landmarks are points on pixels; box and crop corners are edges of pixels, so they travel as
        # points half a pixel in (a flip then maps x to w - x, as it maps pixel columns).
        points_in = np.concatenate([kps, box_corners - 0.5, crop_corners - 0.5]).astype(np.float32)
        out = self.transform(image=crop, keypoints=points_in, **extra)
        image = np.ascontiguousarray(out["image"])
        nh, nw = image.shape[:2]
        points = np.asarray(out["keypoints"], dtype=np.float64)[:, :2]
        points[n_lm:] += 0.5
        moved_box = points[n_lm:n_lm + 4] / s + [ox, oy]
        box = [float(v) for v in (*moved_box.min(axis=0), *moved_box.max(axis=0))]
        landmarks = (points[:n_lm] / s + [ox, oy]).tolist()
        same = (nw, nh) == (w, h)
        crop_box = list(frame.crop_box) if same else [ox, oy, ox + int(round(nw / s)), oy + int(round(nh / s))]
        moved = dataclasses.replace(frame, box=box, landmarks=landmarks, crop_box=crop_box)
        if frame.face_box is not None or frame.native_box is not None:
            # A compact entry's face layer and native pixels lie mirrored about the crop after a flip.
            flips = self._flips(points[n_lm + 4:], w, h)
            moved = dataclasses.replace(moved, face_box=_mirror(frame.face_box, frame.crop_box, flips),
                                        native_box=_mirror(frame.native_box, frame.crop_box, flips))
        return image, moved, (None if mask is None else np.asarray(out["mask"], dtype=np.float32))

    def _flips(self, corners: np.ndarray, w: float, h: float) -> tuple[bool, bool]:
        """(flipped left-right, flipped up-down) from where the corners (0, 0) and (w, h) went; a
        transform that moved or resampled them otherwise cannot be followed by the other layers."""
        flip_x, flip_y = corners[0, 0] > corners[1, 0], corners[0, 1] > corners[1, 1]
        span = np.abs(corners[1] - corners[0])
        if np.abs(span - [w, h]).max() > 1.01 or (not flip_x and corners[0, 0] > 0.5) or (not flip_y and corners[0, 1] > 0.5):
            names = ", ".join(str(t.get("name")) for t in self.specs)
            raise ConfigError(f"augment.transforms ({names}) move or resample pixels, which the face layer and native "
                              "pixels of a compact cache cannot follow; use flips and colour/codec transforms, or a cache "
                              "extracted with --store full")
        return bool(flip_x), bool(flip_y)

    def _follow(self, layer, seed: int) -> tuple[np.ndarray, tuple[bool, bool]]:
        """A compact entry's layer (face, crop or native pixels) under the sample's draw, and the flips
        it made (the same for every layer: `_flips` refuses any other move)."""
        self.transform.set_random_seed(seed)
        h, w = layer.image.shape[:2]
        out = self.transform(image=layer.image, keypoints=np.array([[-0.5, -0.5], [w - 0.5, h - 0.5]], dtype=np.float32))
        flips = self._flips(np.asarray(out["keypoints"], dtype=np.float64)[:, :2] + 0.5, w, h)
        return np.ascontiguousarray(out["image"]), flips


def stored_shape(frame) -> tuple[int, int, int]:
    """(h, w, 3) of a compact frame's context crop: its box at its scale, as compact.pack_track sizes it."""
    w, h = scaled_size(frame.crop_box[2] - frame.crop_box[0], frame.crop_box[3] - frame.crop_box[1], frame.scale)
    return h, w, 3


def _mirror_frame(frame, flips: tuple[bool, bool]):
    """A compact frame's geometry after its crop was flipped: box, landmarks and the layers' boxes
    mirrored about the crop box (source pixels, continuous: x -> x0 + x1 - x)."""
    if not any(flips):
        return frame
    cx0, cy0, cx1, cy1 = frame.crop_box
    lm = np.asarray(frame.landmarks, dtype=np.float64).reshape(-1, 2).copy()
    b = list(frame.box)
    if flips[0]:
        lm[:, 0] = cx0 + cx1 - lm[:, 0]
        b[0], b[2] = cx0 + cx1 - b[2], cx0 + cx1 - b[0]
    if flips[1]:
        lm[:, 1] = cy0 + cy1 - lm[:, 1]
        b[1], b[3] = cy0 + cy1 - b[3], cy0 + cy1 - b[1]
    return dataclasses.replace(frame, box=[float(v) for v in b], landmarks=lm.tolist(),
                               face_box=_mirror(frame.face_box, frame.crop_box, flips),
                               native_box=_mirror(frame.native_box, frame.crop_box, flips))


def _mirror(box, crop_box, flips: tuple[bool, bool]):
    """A source box inside `crop_box` mirrored as a flip of the crop mirrors it."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = crop_box
    if flips[0]:
        x0, x1 = cx0 + cx1 - x1, cx0 + cx1 - x0
    if flips[1]:
        y0, y1 = cy0 + cy1 - y1, cy0 + cy1 - y0
    return [int(x0), int(y0), int(x1), int(y1)]
