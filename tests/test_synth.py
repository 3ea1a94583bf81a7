"""`dfpanel synth`: layouts as the real releases, real containers, faces a real detector finds, determinism,
resume, and user errors."""

from __future__ import annotations

import csv
import json
import os
import re

import av
import numpy as np
import pytest

from dfpanel.cli import main
from dfpanel.errors import DataError, DfpanelError
from dfpanel.synth import LAYOUTS, SIDECAR, SIDECAR_VERSION, plan, synthesize
from dfpanel.synth.layouts import celebdf_test_size, ffpp_split_counts
from dfpanel.synth.render import face_boxes

SMALL = dict(seconds=0.6, size=(320, 240), fps=25.0, progress=False)
SETS = {
    "ffpp": dict(videos=2),
    "celebdf": dict(videos=3),
    "dfdc": dict(videos=2, parts=2),
    "fakeavceleb": dict(videos=1),
    "folder": dict(videos=2),
}


def decode(path):
    """(frames as N x H x W x 3 uint8, mono audio float32 or None)."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    audio = None
    with av.open(str(path)) as c:
        if c.streams.audio:
            audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(audio=0)]).astype(np.float32)
    return frames, audio


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for layout, kw in SETS.items():
        out[layout] = (root / layout, synthesize(layout, root / layout, seed=3, **SMALL, **kw))
    return out


def test_every_sidecar_video_is_a_real_h264_mp4_with_audio_exactly_where_the_dataset_has_it(datasets):
    for layout, (root, sidecar) in datasets.items():
        assert sidecar["layout"] == layout and sidecar["version"] == SIDECAR_VERSION
        on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}
        assert on_disk == set(sidecar["videos"]), layout
        labels = {e["label"] for e in sidecar["videos"].values()}
        assert labels == {0, 1}, layout
        for rel, entry in sidecar["videos"].items():
            with av.open(str(root / rel)) as c:
                v = c.streams.video[0]
                assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
                assert (v.codec_context.width, v.codec_context.height) == (320, 240)
                assert bool(c.streams.audio) == entry["has_audio"], rel
                if c.streams.audio:
                    assert c.streams.audio[0].codec_context.name == "aac"
            assert entry["has_audio"] == (layout in ("dfdc", "fakeavceleb", "folder"))
            assert (entry["label"] == 0) == (entry["manipulations"] == [] and entry["fake_type"] in ("real", "RealVideo-RealAudio"))


def test_ffpp_layout_names_and_splits_follow_the_release():
    p = plan("ffpp", videos=7, compressions=("c23", "c40", "c0"), seed=1)
    paths = [o.path for o in p.outputs]
    assert "original_sequences/youtube/c40/videos/006.mp4" in paths
    fakes = [x for x in paths if x.startswith("manipulated_sequences/")]
    listed_pairs = sum(len(json.loads(p.files[f"splits/{s}.json"])) for s in ("train", "val", "test"))
    # FF++ swaps both ways within each listed pair: 2 fakes per pair, per method, per compression.
    assert len(fakes) == listed_pairs * 2 * 5 * 3
    for f in fakes:
        assert re.fullmatch(r"manipulated_sequences/(Deepfakes|Face2Face|FaceSwap|NeuralTextures|FaceShifter)/"
                            r"c(0|23|40)/videos/\d{3}_\d{3}\.mp4", f), f
    crf = {o.path.split("/")[2]: o.crf for o in p.outputs if o.label == 0}
    assert crf == {"c0": 1, "c23": 23, "c40": 40}
    splits = {s: json.loads(p.files[f"splits/{s}.json"]) for s in ("train", "val", "test")}
    listed = [v for pairs in splits.values() for pair in pairs for v in pair]
    assert sorted(set(listed)) == [f"{k:03d}" for k in range(7)]
    for s, pairs in splits.items():
        assert pairs and all(len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in pairs), s
        members = {v for pair in pairs for v in pair}
        # every fake target_source of this split's pairs lies in the split: no identity crosses splits
        for o in p.outputs:
            target = o.path.rsplit("/", 1)[1][:3]
            if target in members:
                assert o.split == s
                if o.label:
                    assert o.path.rsplit("/", 1)[1][4:7] in members


def test_ffpp_with_six_videos_has_real_and_fake_in_every_split():
    p = plan("ffpp", videos=6)
    for s in ("train", "val", "test"):
        labels = {o.label for o in p.outputs if o.split == s}
        assert labels == {0, 1}, s


@pytest.mark.parametrize("n", range(2, 31))
def test_ffpp_splits_are_72_14_14_in_whole_swap_pairs(n):
    """val = test = max(2, round(0.14 n)) originals from n = 6 (a held-out split needs one swapped pair);
    n = 4-5: train + a test pair; n = 2-3: train only. Every fake's face donor is in its split."""
    held = max(2, round(0.14 * n))
    expected = (n - 2 * held, held, held) if n >= 6 else (n - 2, 0, 2) if n >= 4 else (n, 0, 0)
    assert ffpp_split_counts(n) == expected
    p = plan("ffpp", videos=n, seed=n)
    split_of = {o.path.rsplit("/", 1)[1][:3]: o.split for o in p.outputs if o.label == 0}
    assert tuple(sum(s == x for s in split_of.values()) for x in ("train", "val", "test")) == expected
    fakes = {o.path.rsplit("/", 1)[1][:-4] for o in p.outputs if o.label}
    for s in ("train", "val", "test"):
        pairs = json.loads(p.files[f"splits/{s}.json"])
        assert {v for pair in pairs for v in pair} == {v for v, x in split_of.items() if x == s}, s
        for a, b in pairs:  # the indexer expects both directions of every listed pair, as in the release
            assert {f"{a}_{b}", f"{b}_{a}"} <= fakes, (s, a, b)
    for o in p.outputs:
        if o.label:
            target, source = o.path.rsplit("/", 1)[1][:-4].split("_")
            assert split_of[target] == split_of[source] == o.split, o.path


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 8, 12, 20, 60, 300])
def test_celebdf_test_list_is_about_8_percent_a_third_real_and_keeps_fakes_with_their_clip(n):
    p = plan("celebdf", videos=n, seed=n)
    total = len(p.outputs)
    lines = p.files["List_of_testing_videos.txt"].split()
    listed = dict(zip(lines[1::2], lines[0::2]))
    test = {o.path: o for o in p.outputs if o.split == "test"}
    assert set(listed) == set(test)
    reals = sum(o.label == 0 for o in test.values())
    assert reals >= 1 and len(test) - reals >= 1
    clip = len(p.clips[0][1])  # a Celeb-real clip and its fakes: the smallest unit with both labels
    assert celebdf_test_size(total, clip)[1] == max(clip, total // 4)
    assert len(test) <= max(clip, total // 4)
    if total >= 13:
        assert len(test) <= total / 4
    if total >= 100:
        assert 0.06 <= len(test) / total <= 0.11
        assert 0.25 <= reals / len(test) <= 0.45
    for path, o in test.items():
        if o.label:  # a test fake's original clip is in the list too
            ident, _, num = path.rsplit("/", 1)[1][:-4].split("_")
            assert f"Celeb-real/{ident}_{num}.mp4" in test


def test_celebdf_test_list_uses_its_own_label_convention(datasets):
    root, sidecar = datasets["celebdf"]
    lines = (root / "List_of_testing_videos.txt").read_text().splitlines()
    assert lines
    for line in lines:
        m = re.fullmatch(r"([01]) ((Celeb-real|Celeb-synthesis|YouTube-real)/[\w]+\.mp4)", line)
        assert m, line
        assert int(m.group(1)) == 1 - sidecar["videos"][m.group(2)]["label"]  # 1 = REAL in Celeb-DF
        assert (root / m.group(2)).is_file()
    for rel, e in sidecar["videos"].items():
        if rel.startswith("Celeb-synthesis/"):
            t, s, n = re.fullmatch(r"Celeb-synthesis/(id\d+)_(id\d+)_(\d{4})\.mp4", rel).groups()
            assert t != s and (root / f"Celeb-real/{t}_{n}.mp4").is_file()
            assert "face_swap" in e["manipulations"] and e["source_identity"] == f"celebdf-{s}"


def test_dfdc_parts_have_metadata_in_the_dfdc_format_and_audio_only_fakes():
    p = plan("dfdc", videos=8, parts=3, seed=2)
    assert sorted({o.path.split("/")[0] for o in p.outputs}) == [f"dfdc_train_part_{k}" for k in range(3)] + ["test"]
    audio_only = 0
    for k in range(3):
        meta = json.loads(p.files[f"dfdc_train_part_{k}/metadata.json"])
        assert len(meta) == 16
        for name, m in meta.items():
            assert re.fullmatch(r"[a-z]{10}\.mp4", name)
            assert set(m) == {"label", "split", "original"} and m["split"] == "train"
            if m["label"] == "REAL":
                assert m["original"] is None
            else:
                assert m["label"] == "FAKE" and meta[m["original"]]["label"] == "REAL"
    for o in p.outputs:
        if o.label and o.split == "train" and set(o.manipulations) <= {"audio_shift", "audio_replace"}:
            audio_only += 1
    assert audio_only >= 3


def test_dfdc_test_set_has_labels_csv_its_own_people_and_the_same_mix_of_fakes():
    p = plan("dfdc", videos=8, parts=3, seed=2)
    rows = list(csv.reader(p.files["test/labels.csv"].splitlines()))
    assert rows[0] == ["filename", "label"]
    labels = {name: int(label) for name, label in rows[1:]}
    assert [name for name, _ in rows[1:]] == sorted(labels)  # row order does not give the label away
    test = {o.path: o for o in p.outputs if o.split == "test"}
    assert set(test) == {f"test/{name}" for name in labels} and len(test) == 16
    assert all(re.fullmatch(r"[a-z]{10}\.mp4", name) for name in labels)
    assert all(labels[path[5:]] == o.label and o.audio for path, o in test.items())
    assert sum(labels.values()) == 8
    train = [o for o in p.outputs if o.split == "train"]
    def people(outs):
        return {o.identity_name for o in outs} | {o.source_name for o in outs if o.source_name}

    assert not people(test.values()) & people(train)
    train_names = {o.path.rsplit("/", 1)[1] for o in train}
    assert not train_names & set(labels)
    kinds = {tuple(o.manipulations) for o in test.values() if o.label}
    assert len(kinds) == 8  # 8 fakes cycle through all 8 recipes, audio-only ones included
    # the train parts do not change with the test set
    no_test = plan("dfdc", videos=8, parts=3, seed=2, test_videos=0)
    assert "test/labels.csv" not in no_test.files and {o.split for o in no_test.outputs} == {"train"}
    assert [o.path for o in no_test.outputs] == [o.path for o in train]
    two = [o for o in plan("dfdc", videos=8, parts=1, seed=5, test_videos=2).outputs if o.split == "test" and o.label]
    assert len(two) == 2 and any(set(o.manipulations) <= {"audio_shift", "audio_replace"} for o in two)
    assert any(not set(o.manipulations) <= {"audio_shift", "audio_replace"} for o in two)


def test_fakeavceleb_csv_has_the_release_header_and_points_at_the_files(datasets):
    root, sidecar = datasets["fakeavceleb"]
    with open(root / "meta_data.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["source", "target1", "target2", "method", "category", "type", "race", "gender", "path", ""]
    types = set()
    for row in rows[1:]:
        assert row[9].startswith("FakeAVCeleb/") and row[9].split("/")[1] == row[5]
        rel = "/".join(row[9].split("/")[1:]) + "/" + row[8]
        assert (root / rel).is_file(), rel
        assert sidecar["videos"][rel]["fake_type"] == row[5]
        types.add((row[4], row[5]))
        fake_audio = row[5].endswith("FakeAudio")
        assert ("audio_replace" in sidecar["videos"][rel]["manipulations"]) == fake_audio
    assert types == {("A", "RealVideo-RealAudio"), ("B", "RealVideo-FakeAudio"), ("C", "FakeVideo-RealAudio"),
                     ("D", "FakeVideo-FakeAudio")}


def test_mtcnn_finds_the_rendered_face_in_every_layout(datasets):
    """Across all layouts, MTCNN finds exactly one confident face where it was drawn."""
    import torch
    from facenet_pytorch import MTCNN
    from PIL import Image

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # MTCNN's small convs: threads only add overhead (10x on a busy machine)
    try:
        found, total = _mtcnn_hits(datasets, MTCNN, Image)
    finally:
        torch.set_num_threads(threads)
    assert total >= 60
    assert found / total >= 0.95, f"{found}/{total}"


def _mtcnn_hits(datasets, MTCNN, Image):
    mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=40)
    found = total = 0
    for layout, (root, sidecar) in datasets.items():
        clips = {o.path: clip for clip, outs in plan(layout, seed=3, **SETS[layout], **{k: SMALL[k] for k in ("seconds", "size", "fps")}).clips for o in outs}
        for rel in sidecar["videos"]:
            frames, _ = decode(root / rel)
            picks = [0, len(frames) - 1]
            expected = face_boxes(clips[rel], picks)
            for i, box in zip(picks, expected):
                boxes, probs = mtcnn.detect(Image.fromarray(frames[i]))
                total += 1
                if boxes is None or len(boxes) != 1 or probs[0] <= 0.9:
                    continue
                b = np.asarray(boxes[0], dtype=float)
                ix = max(0, min(b[2], box[2]) - max(b[0], box[0])) * max(0, min(b[3], box[3]) - max(b[1], box[1]))
                iou = ix / ((b[2] - b[0]) * (b[3] - b[1]) + (box[2] - box[0]) * (box[3] - box[1]) - ix)
                found += iou > 0.5
    return found, total


def test_same_seed_same_frames_and_audio_other_seed_differs(tmp_path):
    kw = dict(videos=1, seconds=0.4, size=(160, 120), progress=False)
    a = synthesize("folder", tmp_path / "a", seed=5, **kw)
    synthesize("folder", tmp_path / "b", seed=5, **kw)
    synthesize("folder", tmp_path / "c", seed=6, **kw)
    for rel in a["videos"]:
        fa, aa = decode(tmp_path / "a" / rel)
        fb, ab = decode(tmp_path / "b" / rel)
        fc, _ = decode(tmp_path / "c" / rel)
        assert np.array_equal(fa, fb) and np.array_equal(aa, ab)
        assert np.abs(fa.astype(int) - fc.astype(int)).mean() > 5
    assert (tmp_path / "a" / SIDECAR).read_text() == (tmp_path / "b" / SIDECAR).read_text()


def test_rerun_skips_finished_videos_redoes_missing_ones_and_refuses_other_params(tmp_path):
    kw = dict(videos=1, seconds=0.4, size=(160, 120), progress=False, seed=1)
    sidecar = synthesize("folder", tmp_path, **kw)
    paths = [tmp_path / rel for rel in sidecar["videos"]]
    old = {p: p.stat().st_mtime_ns for p in paths}
    os.utime(paths[0], ns=(1, 1))
    paths[1].unlink()
    synthesize("folder", tmp_path, **kw)
    assert paths[0].stat().st_mtime_ns == 1  # untouched
    assert paths[1].is_file() and paths[1].stat().st_mtime_ns >= old[paths[1]]
    assert not list(tmp_path.rglob(".*partial*"))
    with pytest.raises(DataError, match="other parameters"):
        synthesize("folder", tmp_path, **{**kw, "seed": 2})


def test_folder_from_the_previous_synth_version_is_refused_not_mixed(tmp_path):
    """Version 1 wrote other FF++ pairs, Celeb-DF test lists and no DFDC test set: never resume into it."""
    kw = dict(videos=1, parts=1, test_videos=0, seconds=0.2, size=(128, 120), progress=False)
    sidecar = synthesize("dfdc", tmp_path, **kw)
    assert sidecar["params"]["test_videos"] == 0
    path = tmp_path / SIDECAR
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    with pytest.raises(DataError, match="other parameters"):  # same folder, now asking for a test set
        synthesize("dfdc", tmp_path, **{**kw, "test_videos": None})
    old = json.loads(path.read_text())
    old["version"] = 1
    del old["params"]["test_videos"]  # as version 1 wrote it
    path.write_text(json.dumps(old))
    for test_videos in (0, None):
        with pytest.raises(DataError, match="version 1") as err:
            synthesize("dfdc", tmp_path, **{**kw, "test_videos": test_videos})
        assert "\n" not in str(err.value)
    old["version"] = SIDECAR_VERSION  # the right version with version 1's params is refused too
    path.write_text(json.dumps(old))
    with pytest.raises(DataError, match="other parameters"):
        synthesize("dfdc", tmp_path, **kw)
    assert not (tmp_path / "test").exists()
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p != path} == {
        p: t for p, t in before.items() if p != path}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=(321, 240)), "even width"),
        (dict(size=(96, 64)), "from 128x120"),
        (dict(layout="youtube"), "unknown layout"),
        (dict(layout="ffpp", videos=1), "too few"),
        (dict(compressions=("c99",)), "c99"),
        (dict(test_videos=-1), "--test-videos -1"),
    ],
)
def test_bad_parameters_are_one_line_user_errors(tmp_path, kwargs, message):
    args = dict(layout="folder", videos=1, seconds=0.2, progress=False)
    args.update(kwargs)
    layout = args.pop("layout")
    with pytest.raises(DfpanelError, match=message):
        synthesize(layout, tmp_path / "x", **args)


def test_unwritable_out_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DfpanelError, match="choose a writable"):
        synthesize("folder", blocker / "sub", videos=1, seconds=0.2, progress=False)


def test_cli_writes_a_dataset_and_reports_bad_size_without_traceback(tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(["synth", "--layout", "folder", "--out", str(out), "--videos", "1", "--seconds", "0.2",
                 "--size", "160x120", "--seed", "4", "--preview"])
    assert code == 0
    sidecar = json.loads((out / SIDECAR).read_text())
    assert sidecar["params"]["size"] == [160, 120] and sidecar["seed"] == 4
    assert (out / "preview_real.png").is_file() and (out / "preview_fake.png").is_file()
    code = main(["synth", "--layout", "folder", "--out", str(tmp_path / "e"), "--size", "big"])
    err = capsys.readouterr().err
    assert code == 2 and "WIDTHxHEIGHT" in err and "Traceback" not in err


def test_cli_test_videos_flag_sizes_the_dfdc_test_set(tmp_path, capsys):
    out = tmp_path / "dfdc"
    code = main(["synth", "--layout", "dfdc", "--out", str(out), "--videos", "1", "--parts", "1", "--test-videos", "2",
                 "--seconds", "0.2", "--size", "128x120"])
    assert code == 0
    sidecar = json.loads((out / SIDECAR).read_text())
    assert sidecar["params"]["test_videos"] == 2
    rows = (out / "test" / "labels.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and all((out / "test" / r.split(",")[0]).is_file() for r in rows[1:])
    assert sorted(e["split"] for e in sidecar["videos"].values()) == ["test"] * 4 + ["train"] * 2
    code = main(["synth", "--layout", "dfdc", "--out", str(tmp_path / "e"), "--test-videos", "-2"])
    err = capsys.readouterr().err
    assert code == 2 and "--test-videos -2" in err and "Traceback" not in err


def test_every_layout_is_offered_by_the_cli_planned_with_both_labels_and_read_by_the_indexer(tmp_path, capsys):
    from dfpanel.index import LAYOUT_NAMES
    from dfpanel.synth.layouts import MIN_VIDEOS

    assert set(LAYOUTS) == set(LAYOUT_NAMES)  # index reads every layout synth writes, and synth writes each
    for layout in LAYOUTS:
        assert {o.label for o in plan(layout, videos=MIN_VIDEOS[layout]).outputs} == {0, 1}, layout
        # the CLI hands the layout on to synthesize, which refuses 0 videos before writing anything
        assert main(["synth", "--layout", layout, "--out", str(tmp_path / layout), "--videos", "0"]) == 2
        err = capsys.readouterr().err
        assert "too few" in err and "unknown" not in err, (layout, err)
        assert not (tmp_path / layout).exists()
    assert main(["synth", "--layout", "youtube", "--out", str(tmp_path / "youtube")]) == 2
    assert "unknown" in capsys.readouterr().err
