"""`dfpanel pseudofakes preview`: the files it writes on a small cache, and its one-line refusals."""

from __future__ import annotations

import json

import numpy as np
from factories import cache_video, memory_entry
from PIL import Image
from test_pseudofakes import speech, textured_frames

from dfpanel.cli import main


def small_cache(root, reals: int = 2, fakes: int = 1):
    """Videos of 8 textured frames in clips of 4 at 1.0-1.28 s with speech; fakes are labelled 1."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.jsonl").touch()
    for i in range(reals + fakes):
        label = int(i >= reals)
        audio = speech((0, 2)[i % 2])  # voices whose speech covers 1.0-1.3 s
        entry, _ = memory_entry(frames=textured_frames(8, seed=i), t0=1.0, clip_len=4, audio=audio)
        meta = entry.meta
        meta.video_id, meta.dataset = f"vid{i}", "demo"
        crops = [entry.crop(p) for p in range(len(meta.frames))]
        cache_video(root, meta, crops, audio, label=label, split="train")
    return root


def test_preview_writes_images_audio_and_an_index(tmp_path, capsys):
    cache, out = small_cache(tmp_path / "cache"), tmp_path / "out"
    assert main(["pseudofakes", "preview", str(cache), "--out", str(out), "--videos", "2", "--seed", "3"]) == 0
    assert "pseudo-fake previews" in capsys.readouterr().out
    index = json.loads((out / "index.json").read_text())
    samples = index["samples"]
    assert {s["generator"] for s in samples} == {"audio_desync", "recompress", "self_blend", "temporal_blend"}
    assert {s["video"] for s in samples} == {"vid0", "vid1"}  # reals only
    for s in samples:
        assert "skipped" not in s, s
        for rel in s["files"]:
            assert (out / rel).is_file()
        png = np.asarray(Image.open(out / s["files"][0]))
        crop_h, crop_w = 181, 161
        assert png.shape[0] >= len(s["positions"]) * crop_h and png.shape[1] >= 3 * crop_w
        json.dumps(s["details"])
    audio = [s for s in samples if s["generator"] == "audio_desync"]
    assert all({f.rsplit("/", 1)[1] for f in s["files"]} == {"preview.png", "original.wav", "pseudofake.wav"} for s in audio)
    clips = [s for s in samples if s["generator"] == "temporal_blend"]
    assert all(len(s["positions"]) == 4 for s in clips)
    # the same seed writes the same index
    again = tmp_path / "again"
    assert main(["pseudofakes", "preview", str(cache), "--out", str(again), "--videos", "2", "--seed", "3"]) == 0
    assert json.loads((again / "index.json").read_text())["samples"] == samples


def test_preview_one_generator(tmp_path):
    cache, out = small_cache(tmp_path / "cache", reals=1, fakes=0), tmp_path / "out"
    assert main(["pseudofakes", "preview", str(cache), "--out", str(out), "--generator", "recompress"]) == 0
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["recompress"]


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    flat = " ".join(err.split())  # rich may wrap a long line
    assert all(n in flat for n in needles), err


def test_preview_refuses_a_folder_that_is_no_cache(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    assert main(["pseudofakes", "preview", str(tmp_path / "stuff"), "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, "not a face-track cache")
    assert not (tmp_path / "out").exists()


def test_preview_refuses_a_cache_without_reals_and_an_unknown_generator(tmp_path, capsys):
    fakes_only = small_cache(tmp_path / "fakes", reals=0, fakes=1)
    assert main(["pseudofakes", "preview", str(fakes_only), "--out", str(tmp_path / "o1")]) == 2
    _one_line_error(capsys, "no real videos")
    cache = small_cache(tmp_path / "cache", reals=1, fakes=0)
    assert main(["pseudofakes", "preview", str(cache), "--out", str(tmp_path / "o2"), "-g", "nope"]) == 2
    _one_line_error(capsys, "unknown pseudo-fake generator 'nope'", "self_blend")
    assert not (tmp_path / "o2").exists()
