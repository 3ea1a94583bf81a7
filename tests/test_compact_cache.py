"""Compact storage (InputSpec.store = "compact"): native pixels bit-exact, the rest visually lossless,
the same bytes and views in the cache and in detection's memory, old caches still read and convert.

The test video's face (~110 px) is shrunk on purpose (face layer 64 px, context layer 48 px: what 64 px views need) so the
scaled paths run; native windows are kept at 64 px, the size the tiny specialists' CM/RR views cut."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from video_factory import VideoSpec, make_video

from dfpanel.errors import ConfigError, DataError
from dfpanel.extract.cache import (
    EditedEntry,
    FaceTrackCache,
    FaceTrackEntry,
    entry_from_track,
)
from dfpanel.extract.convert import convert_cache
from dfpanel.extract.run import ExtractConfig, run_extraction
from dfpanel.extract.spec import LEGACY_SPEC, InputSpec
from dfpanel.extract.video import extract_video
from dfpanel.index.manifest import VideoRecord, write_manifest
from dfpanel.models.specialists.base import create_specialist
from dfpanel.train.augment import CropAugmenter
from dfpanel.views.ops import face_crop, mouth_crop, native_window
from dfpanel.views.samples import sample_groups

TINY = dict(backbone="tiny", image_size=64, clip_len=4, pretrained=False)
EXACT_KEYS = {"luma", "dct", "residuals", "spectrum"}  # CM and RR: cut from native pixels
COMPACT = InputSpec(frames=8, clip_len=4, face_px=64, context_px=48, native_size=64)
FULL = replace(COMPACT, store="full")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("compact")
    video = make_video(root / "v.mp4", VideoSpec(seconds=0.8, size=(320, 240), click_at=0.3))
    write_manifest([VideoRecord(id="v", path=str(video), label=0, fake_type="real", dataset="folder", split="test", group="g")], root / "m.jsonl")
    out = {}
    for spec in (FULL, COMPACT):
        out[spec.store] = root / spec.store
        run_extraction(root / "m.jsonl", out[spec.store], ExtractConfig(spec), progress=False)
    return video, out


def entries(caches):
    _, roots = caches
    f, c = (FaceTrackCache(roots[s]) for s in ("full", "compact"))
    return f.entry(f.rows()[0]), c.entry(c.rows()[0])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    m = float(((a.double() - b.double()) ** 2).mean())
    return 99.0 if m == 0 else 10 * np.log10(1.0 / m)


def test_compact_entries_hold_a_shrunk_context_and_a_native_window(caches):
    full, compact = entries(caches)
    assert [f.box for f in full.meta.frames] == [f.box for f in compact.meta.frames]  # the same track
    assert compact.meta.version == 2 and full.meta.version == 1
    for pos, f in enumerate(compact.meta.frames):
        assert f.file.startswith("context/") and f.native_file.startswith("native/") and f.face_file.startswith("face/")
        side = max(f.box[2] - f.box[0], f.box[3] - f.box[1])
        assert f.scale * side == pytest.approx(48, rel=0.25)  # one scale per clip
        assert f.face_scale * side == pytest.approx(64, rel=0.25)
        h, w = compact.crop(pos).shape[:2]
        assert w == pytest.approx((f.crop_box[2] - f.crop_box[0]) * f.scale, abs=1)
        face, origin = compact.face(pos)
        fb = f.face_box
        assert tuple(fb[:2]) == origin and fb[2] - fb[0] == pytest.approx(1.4 * side, abs=2)
        assert face.shape[1] == pytest.approx((fb[2] - fb[0]) * f.face_scale, abs=1)
        native, origin = compact.native(pos)
        nb = f.native_box
        assert native.shape[:2] == (nb[3] - nb[1], nb[2] - nb[0]) and tuple(nb[:2]) == origin
        assert nb[2] - nb[0] <= 64 and nb[3] - nb[1] <= 64
        # the stored native pixels are the full crop's, untouched
        cb = f.crop_box
        np.testing.assert_array_equal(native, full.crop(pos)[nb[1] - cb[1]:nb[3] - cb[1], nb[0] - cb[0]:nb[2] - cb[0]])


@pytest.mark.parametrize("size", [64, 56, 32, 8 * 8])
def test_native_windows_are_bit_exact_up_to_native_size(caches, size):
    full, compact = entries(caches)
    for pos in range(len(full)):
        wf, of = native_window(full, pos, size)
        wc, oc = native_window(compact, pos, size)
        assert of == oc
        np.testing.assert_array_equal(wf, wc)


def test_a_view_wider_than_the_stored_native_window_is_a_one_line_error(caches):
    _, compact = entries(caches)
    with pytest.raises(DataError, match=r"keeps 64 px of native pixels .* --native-size 128"):
        native_window(compact, 0, 128)


def test_every_specialist_view_matches_the_full_cache(caches):
    """CM/RR native inputs bit-exact; every other image input visually close (PSNR): a wrong scale or
    origin in the box mapping would cut another part of the frame (PSNR ~10-15 dB)."""
    full, compact = entries(caches)
    worst: dict[str, float] = {}
    for name in ("bg", "av", "cm", "rr", "tm"):
        model = create_specialist(name, **TINY)
        view = model.view_fn()
        for positions in sample_groups(full, model.sample_kind, model.config.get("clip_len")):
            vf, vc = view(full, positions), view(compact, positions)
            for key, t in vf.items():
                if key in EXACT_KEYS:
                    assert torch.equal(t, vc[key]), (name, key)
                elif torch.is_tensor(t) and t.is_floating_point() and t.dim() >= 3:
                    worst[f"{name}.{key}"] = min(worst.get(f"{name}.{key}", 99.0), psnr(t, vc[key]))
    assert {"bg.face", "bg.context", "av.mouth", "tm.frames", "cm.face"} <= set(worst)
    assert min(worst.values()) > 28, worst
    for pos in range(len(full)):  # the mouth is found from landmarks mapped by the scale
        assert psnr(mouth_crop(full, pos, 16), mouth_crop(compact, pos, 16)) > 28


def test_detection_packs_and_decodes_exactly_as_the_cache(caches):
    """Equal by construction: the in-memory entry of a fresh extraction gives byte-identical views."""
    video, _ = caches
    _, cached = entries(caches)
    ((meta, crops, audio),) = extract_video(video, ExtractConfig(COMPACT), video_id="v", dataset="folder")
    memory = entry_from_track(meta, crops, audio)
    for name in ("bg", "av", "cm", "rr", "tm"):
        model = create_specialist(name, **TINY)
        view = model.view_fn()
        for positions in sample_groups(cached, model.sample_kind, model.config.get("clip_len")):
            a, b = view(cached, positions), view(memory, positions)
            for key in a:
                assert torch.equal(a[key], b[key]), (name, key)
    for rel in ("context/000000.webp", "face/000000.webp", "native/000000.webp"):
        assert memory.read_bytes(rel) == cached.read_bytes(rel)


def test_compact_is_smaller_and_the_spec_records_how(caches):
    _, roots = caches

    def size(root: Path) -> int:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.parent.name in ("crops", "context", "native"))

    assert size(roots["compact"]) * 2 < size(roots["full"])
    spec = FaceTrackCache(roots["compact"]).input_spec
    assert (spec.store, spec.face_px, spec.context_px, spec.native_size) == ("compact", 64, 48, 64)
    assert "--store compact --face-px 64 --face-span 1.4 --context-px 48 --native-size 64" in spec.extract_args()
    assert not spec.same_views(FaceTrackCache(roots["full"]).input_spec)  # weights of one refuse the other


def test_a_spec_from_before_compact_storage_reads_as_full():
    old = InputSpec().to_dict()
    for key in ("store", "face_px", "face_span", "context_px", "native_size", "context_quality"):
        old.pop(key)
    assert InputSpec.from_dict(old).store == "full" and LEGACY_SPEC.store == "full"
    assert InputSpec().store == "compact"  # what a new extraction writes
    with pytest.raises(ConfigError, match="native_size"):
        InputSpec(native_size=100)


def test_convert_writes_what_a_compact_extraction_writes_and_resumes(caches, tmp_path):
    _, roots = caches
    out = tmp_path / "converted"
    stats = convert_cache(roots["full"], out, face_px=64, context_px=48, native_size=64)
    assert stats["converted"] == 1 and stats["bytes_after"] < stats["bytes_before"]
    conv, fresh = FaceTrackCache(out), FaceTrackCache(roots["compact"])
    assert conv.input_spec.same_views(fresh.input_spec)
    a, b = conv.entry(conv.rows()[0]), fresh.entry(fresh.rows()[0])
    assert [f.native_box for f in a.meta.frames] == [f.native_box for f in b.meta.frames]
    for f in a.meta.frames:
        for rel in (f.file, f.face_file, f.native_file):
            assert a.read_bytes(rel) == b.read_bytes(rel)
    np.testing.assert_array_equal(a.audio, b.audio)
    again = convert_cache(roots["full"], out, face_px=64, context_px=48, native_size=64)
    assert again == {**again, "converted": 0, "skipped": 1}
    with pytest.raises(ConfigError, match="already a compact cache"):
        convert_cache(roots["compact"], tmp_path / "x")


def test_a_flip_moves_the_native_window_as_it_moves_the_crop(caches):
    """Augmentation applies the same draw to both layers; flipped native pixels land mirrored about the
    crop, so RR's native window of a flipped compact entry equals the flipped full entry's, but for at
    most 8 columns at one side: the window re-snaps to the grid round the mirrored face, up to 8 px
    past what the cache stored, and those are reflected instead."""
    full, compact = entries(caches)
    flip = CropAugmenter([{"name": "HorizontalFlip", "p": 1.0}])
    for pos in range(len(full)):
        af, ac = flip(full, [pos], seed=3), flip(compact, [pos], seed=3)
        assert af.meta.frames[pos].box == pytest.approx(ac.meta.frames[pos].box, abs=0.6)
        wf, _ = native_window(af, pos, 64)
        wc, _ = native_window(ac, pos, 64)
        np.testing.assert_array_equal(wf[:, 8:-8], wc[:, 8:-8])
        differ = np.flatnonzero((wf != wc).any(axis=(0, 2)))
        assert len(differ) <= 8 and (differ.size == 0 or differ.max() < 8 or differ.min() >= 56)
        assert psnr(face_crop(af, pos, 64), face_crop(ac, pos, 64)) > 28
    shift = CropAugmenter([{"name": "Affine", "translate_px": 9, "p": 1.0}])
    with pytest.raises(ConfigError, match="cannot follow"):
        shift(compact, [0], seed=1)
    shift(full, [0], seed=1)  # a full cache has one layer: any transform


def test_pseudo_fakes_edit_the_native_pixels_too(caches):
    from dfpanel.pseudofakes.base import create_pseudofake

    _, compact = entries(caches)
    for name in ("recompress", "self_blend"):
        fake = create_pseudofake(name).make(compact, [0], np.random.default_rng(5))
        native, origin = fake.entry.native(0)
        before, origin0 = compact.native(0)
        assert origin == origin0 and native.shape == before.shape
        assert not np.array_equal(native, before)  # CM and RR see the trace
        assert fake.masks[0].shape == compact.crop(0).shape[:2]  # the mask target is in context pixels
        assert isinstance(fake.entry, EditedEntry)
    # the base entry is untouched
    assert np.array_equal(compact.native(0)[0], FaceTrackEntry(compact.folder).native(0)[0])


def test_cache_index_and_meta_round_trip(caches):
    _, roots = caches
    meta = json.loads(next((roots["compact"] / "folder").glob("*/meta.json")).read_text())
    frame = meta["frames"][0]
    assert {"scale", "native_box", "native_file"} <= set(frame)
    assert meta["input_spec"]["store"] == "compact"


def test_convert_command_line(caches, tmp_path, capsys):
    from dfpanel.cli import main

    _, roots = caches
    rc = main(["cache", "convert", str(roots["full"]), "--out", str(tmp_path / "c"), "--face-px", "64", "--context-px", "48",
               "--native-size", "64"])
    assert rc in (0, None)
    assert "converted 1 entries" in capsys.readouterr().out
    assert FaceTrackCache(tmp_path / "c").input_spec.store == "compact"
    rc = main(["cache", "convert", str(roots["compact"]), "--out", str(tmp_path / "d")])
    assert rc == 2 and "already a compact cache" in capsys.readouterr().err


def test_report_thumbnails_show_the_same_face(caches):
    """The report's face thumbnail is cut from whichever stored image holds the face: a compact entry's
    shows the same face as the full crop's (a crop cut in source coordinates from a scaled layer would not)."""
    import io

    from PIL import Image

    from dfpanel.detect.pipeline import face_thumbnail

    full, compact = entries(caches)
    for pos in (0, len(full) - 1):
        a, b = (np.asarray(Image.open(io.BytesIO(face_thumbnail(e, pos))).convert("RGB")) for e in (full, compact))
        w = min(a.shape[1], b.shape[1])
        assert a.shape[0] == b.shape[0] == 112 and abs(a.shape[1] - b.shape[1]) <= 2
        assert psnr(torch.from_numpy(a[:, :w] / 255.0), torch.from_numpy(b[:, :w] / 255.0)) > 22
