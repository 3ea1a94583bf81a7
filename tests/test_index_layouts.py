"""Each dataset adapter on a hand-written tree in the dataset's real format (tests/fixtures/index/)."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pytest
from fixtures.index_tree import build

from dfpanel.errors import DataError
from dfpanel.index import index_dataset
from dfpanel.index.dfdc import chunk_of_parts


def by_path(records):
    return {r.path: r for r in records}


def assert_groups_disjoint(records, splits=("train", "val", "test")):
    splits_of = defaultdict(set)
    for r in records:
        if r.split in splits:
            splits_of[r.group].add(r.split)
    shared = {g: s for g, s in splits_of.items() if len(s) > 1}
    assert not shared, f"groups in several splits: {shared}"


def assert_ids_safe_and_unique(records):
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids))
    for i in ids:
        assert "/" not in i and " " not in i and "(" not in i


# --- FaceForensics++ ------------------------------------------------------------------------------


@pytest.fixture
def ffpp(tmp_path):
    return build("ffpp", tmp_path)


def test_ffpp_labels_splits_and_groups(ffpp):
    recs = index_dataset(ffpp, "ffpp")
    rows = by_path(recs)
    # 10 originals in the splits + 2 methods x 5 pairs x 2 directions; 999, actors, DFD, masks, c40 left out
    assert len(recs) == 30
    assert "original_sequences/youtube/c23/videos/999.mp4" not in rows
    assert not any("DeepFakeDetection" in p or "masks" in p or "c40" in p or "actors" in p for p in rows)

    orig = rows["original_sequences/youtube/c23/videos/720.mp4"]
    assert (orig.label, orig.fake_type, orig.split, orig.dataset) == (0, "real", "val", "ffpp")
    assert orig.id == "ffpp__original__c23__720"

    fake = rows["manipulated_sequences/Deepfakes/c23/videos/974_953.mp4"]
    assert (fake.label, fake.fake_type, fake.split) == (1, "Deepfakes", "test")
    assert fake.id == "ffpp__Deepfakes__c23__974_953"
    assert fake.extra["target"] == "974" and fake.extra["source"] == "953" and fake.extra["compression"] == "c23"
    # a pair's two originals and all its fakes share one group
    assert fake.group == rows["original_sequences/youtube/c23/videos/953.mp4"].group == \
        rows["manipulated_sequences/FaceSwap/c23/videos/953_974.mp4"].group

    counts = defaultdict(int)
    for r in recs:
        counts[r.split] += 1
    assert counts == {"train": 18, "val": 6, "test": 6}
    assert all(r.has_audio is None and r.chunk is None for r in recs)
    assert all(Path(r.root) == ffpp.resolve() and (Path(r.root) / r.path).is_file() for r in recs)
    assert_groups_disjoint(recs)
    assert_ids_safe_and_unique(recs)


def test_ffpp_other_compression_and_missing_videos_warned(ffpp, caplog):
    with caplog.at_level(logging.WARNING, logger="dfpanel.index"):
        recs = index_dataset(ffpp, "ffpp", compression="c40")
    assert sorted(r.path for r in recs) == [
        "manipulated_sequences/Deepfakes/c40/videos/071_054.mp4",
        "original_sequences/youtube/c40/videos/071.mp4",
    ]
    assert recs[0].extra["compression"] == "c40" and recs[0].id.startswith("ffpp__")
    text = caplog.text
    assert "FaceSwap has no c40 videos" in text
    assert "18 video(s) listed" in text  # 9 originals + 9 Deepfakes c40 videos absent


def test_ffpp_compression_absent_suggests_the_ones_present(ffpp):
    with pytest.raises(DataError, match=r"found c23, c40; pass --compression c23"):
        index_dataset(ffpp, "ffpp", compression="raw")


def test_ffpp_missing_split_file_is_named(ffpp):
    (ffpp / "splits" / "val.json").unlink()
    with pytest.raises(DataError, match=r"splits/val\.json: not found"):
        index_dataset(ffpp)


def test_ffpp_malformed_split_json_names_file_and_line(ffpp):
    (ffpp / "splits" / "train.json").write_text('[["071", "054"],\n ["087" "081"]]')
    with pytest.raises(DataError, match=r"train\.json:2: not valid JSON"):
        index_dataset(ffpp, "ffpp")


def test_ffpp_listed_video_missing_is_skipped_and_named(ffpp, caplog):
    (ffpp / "manipulated_sequences/Deepfakes/c23/videos/071_054.mp4").unlink()
    with caplog.at_level(logging.WARNING, logger="dfpanel.index"):
        recs = index_dataset(ffpp, "ffpp")
    assert len(recs) == 29
    assert "1 video(s) listed" in caplog.text and "Deepfakes/c23/videos/071_054.mp4" in caplog.text


# --- Celeb-DF v2 ----------------------------------------------------------------------------------


@pytest.fixture
def celebdf(tmp_path):
    return build("celebdf", tmp_path)


def test_celebdf_test_list_labels_and_identity_val(celebdf):
    recs = index_dataset(celebdf, "celebdf")
    rows = by_path(recs)
    assert len(recs) == 20  # notes.txt is no video
    test = {p for p, r in rows.items() if r.split == "test"}
    assert test == {"YouTube-real/00170.mp4", "Celeb-real/id0_0001.mp4", "Celeb-synthesis/id0_id2_0001.mp4",
                    "Celeb-synthesis/id4_id0_0000.mp4", "YouTube-real/00210.mp4"}
    # in the list 1 means real and 0 fake; ours are the reverse
    assert rows["YouTube-real/00170.mp4"].label == 0
    assert rows["Celeb-synthesis/id4_id0_0000.mp4"].label == 1

    fake = rows["Celeb-synthesis/id0_id1_0000.mp4"]
    assert (fake.label, fake.fake_type, fake.group) == (1, "Celeb-synthesis", "id0")
    assert fake.extra == {"folder": "Celeb-synthesis", "target": "id0", "source": "id1",
                          "original": "Celeb-real/id0_0000.mp4"}
    assert fake.id == "celebdf__Celeb-synthesis__id0_id1_0000"
    real = rows["Celeb-real/id1_0001.mp4"]
    assert (real.label, real.fake_type, real.group) == (0, "real", "id1")
    assert rows["Celeb-real/id0_0000.mp4"].id == "celebdf__Celeb-real__id0_0000"

    train_val = [r for r in recs if r.split != "test"]
    assert {r.split for r in train_val} == {"train", "val"}
    assert_groups_disjoint(train_val)
    assert_ids_safe_and_unique(recs)


def test_celebdf_list_label_contradicting_folder_names_line(celebdf):
    path = celebdf / "List_of_testing_videos.txt"
    lines = path.read_text().splitlines()
    lines[2] = "1 Celeb-synthesis/id0_id2_0001.mp4"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"List_of_testing_videos\.txt:3: label 1 contradicts folder Celeb-synthesis"):
        index_dataset(celebdf, "celebdf")


def test_celebdf_accepts_crlf_and_warns_on_missing_listed_video(celebdf, caplog):
    path = celebdf / "List_of_testing_videos.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    (celebdf / "Celeb-real/id0_0001.mp4").unlink()
    with caplog.at_level(logging.WARNING, logger="dfpanel.index"):
        recs = index_dataset(celebdf)
    assert len(recs) == 19 and sum(r.split == "test" for r in recs) == 4
    assert "Celeb-real/id0_0001.mp4" in caplog.text


def test_celebdf_garbled_list_line(celebdf):
    (celebdf / "List_of_testing_videos.txt").write_text("1 YouTube-real/00170.mp4\nYouTube-real/00171.mp4\n")
    with pytest.raises(DataError, match=r"List_of_testing_videos\.txt:2: expected"):
        index_dataset(celebdf, "celebdf")


# --- DFDC -----------------------------------------------------------------------------------------


@pytest.fixture
def dfdc(tmp_path):
    return build("dfdc", tmp_path)


def test_dfdc_labels_groups_chunks_and_test_folder(dfdc):
    recs = index_dataset(dfdc, "dfdc", dfdc_chunks=2)
    rows = by_path(recs)
    assert len(recs) == 18 + 4
    assert "dfdc_train_part_1/zzzunlisted.mp4" not in rows

    fake = rows["dfdc_train_part_0/aaqaifqrwn.mp4"]
    assert (fake.label, fake.fake_type, fake.group, fake.chunk, fake.has_audio) == (1, "fake", "vudstovrck", 0, True)
    assert fake.extra == {"part": 0, "original": "vudstovrck.mp4"}
    assert fake.id == "dfdc__part0__aaqaifqrwn"
    real = rows["dfdc_train_part_1/bddsqjkthr.mp4"]  # REAL entry without an "original" key
    assert (real.label, real.fake_type, real.group, real.chunk) == (0, "real", "bddsqjkthr", 0)
    assert rows["dfdc_train_part_2/dakiztgtnw.mp4"].chunk == 1
    assert rows["dfdc_train_part_3/hclsparpth.mp4"].chunk == 1

    train_val = [r for r in recs if r.split != "test"]
    assert {r.split for r in train_val} == {"train", "val"}
    assert_groups_disjoint(train_val)
    # a fake goes wherever its original goes
    assert rows["dfdc_train_part_0/abofeumbvv.mp4"].split == rows["dfdc_train_part_0/abarnvbtwb.mp4"].split

    test = {r.path: r.label for r in recs if r.split == "test"}
    assert test == {"test/aahncigwte.mp4": 1, "test/aalscayrfi.mp4": 0, "test/aayfryxljh.mp4": 0,
                    "test/abrzcjrnqa.mp4": 1}
    assert all(rows[p].chunk is None for p in test)
    assert_ids_safe_and_unique(recs)


def test_dfdc_default_chunks_and_no_test_folder(dfdc):
    import shutil

    shutil.rmtree(dfdc / "test")
    recs = index_dataset(dfdc)
    assert {r.split for r in recs} == {"train", "val"}
    # 4 parts, 10 chunks asked: one part per chunk, in part order
    assert {r.extra["part"]: r.chunk for r in recs} == {0: 0, 1: 1, 2: 2, 3: 3}


def test_dfdc_chunks_are_consecutive_runs_of_parts():
    chunks = chunk_of_parts(list(range(50)), 10)
    assert [chunks[p] for p in range(0, 50, 5)] == list(range(10))
    assert all(chunks[p] == p // 5 for p in range(50))
    assert chunk_of_parts([3, 7, 9], 2) == {3: 0, 7: 0, 9: 1}


def test_dfdc_malformed_metadata_names_file_and_line(dfdc):
    path = dfdc / "dfdc_train_part_2" / "metadata.json"
    path.write_text(path.read_text().replace('"original": null},\n  "dbhrpizyeq', '"original": null}\n  "dbhrpizyeq'))
    with pytest.raises(DataError, match=r"dfdc_train_part_2/metadata\.json:3: not valid JSON"):
        index_dataset(dfdc, "dfdc")


def test_dfdc_bad_label_and_missing_metadata(dfdc):
    path = dfdc / "dfdc_train_part_1" / "metadata.json"
    path.write_text('{"bddsqjkthr.mp4": {"label": "MAYBE", "split": "train"}}')
    with pytest.raises(DataError, match=r"dfdc_train_part_1/metadata\.json: entry 'bddsqjkthr\.mp4'"):
        index_dataset(dfdc, "dfdc")
    path.unlink()
    with pytest.raises(DataError, match=r"dfdc_train_part_1/metadata\.json: not found"):
        index_dataset(dfdc, "dfdc")


# --- FakeAVCeleb ----------------------------------------------------------------------------------


@pytest.fixture
def favc(tmp_path):
    return build("fakeavceleb", tmp_path)


def test_fakeavceleb_categories_identities_and_duplicates(favc):
    recs = index_dataset(favc, "fakeavceleb")
    rows = by_path(recs)
    assert len(recs) == 14  # 15 metadata rows, one file listed twice; the unlisted 00110.mp4 left out
    assert "RealVideo-RealAudio/African/men/id00076/00110.mp4" not in rows

    real = rows["RealVideo-RealAudio/Asian (East)/women/id00029/00055.mp4"]
    assert (real.label, real.fake_type, real.group, real.has_audio) == (0, "real", "id00029", True)
    rvfa = rows["RealVideo-FakeAudio/African/men/id00166/00010_fake.mp4"]
    assert (rvfa.label, rvfa.fake_type) == (1, "RealVideo-FakeAudio")
    dup = rows["FakeVideo-FakeAudio/African/men/id00076/00109_10_id00476_wavtolip.mp4"]
    assert (dup.label, dup.fake_type, dup.group) == (1, "FakeVideo-FakeAudio", "id00076")
    assert dup.extra["methods"] == ["wav2lip", "faceswap-wav2lip"] and dup.extra["target1"] == "id00476"

    assert {r.split for r in recs} == {"train", "val", "test"}
    assert_groups_disjoint(recs)
    assert_ids_safe_and_unique(recs)
    # deterministic
    assert [(r.id, r.split) for r in index_dataset(favc, "fakeavceleb")] == [(r.id, r.split) for r in recs]


def test_fakeavceleb_without_folder_column_rebuilds_paths(favc):
    meta = favc / "meta_data.csv"
    lines = meta.read_text().splitlines()
    lines = [lines[0].rstrip(",")] + [ln.rsplit(",", 1)[0] for ln in lines[1:]]
    meta.write_text("\n".join(lines) + "\n")
    assert len(index_dataset(favc, "fakeavceleb")) == 14


def test_fakeavceleb_bad_header_and_bad_type(favc):
    meta = favc / "meta_data.csv"
    good = meta.read_text()
    meta.write_text(good.replace("method,", "technique,", 1))
    with pytest.raises(DataError, match=r"meta_data\.csv:1: header lacks column\(s\) method"):
        index_dataset(favc, "fakeavceleb")
    meta.write_text(good.replace("rtvc,B,RealVideo-FakeAudio", "rtvc,B,RealVideo-AudioFake", 1))
    with pytest.raises(DataError, match=r"meta_data\.csv:8: type 'RealVideo-AudioFake'"):
        index_dataset(favc, "fakeavceleb")


# --- plain folder ---------------------------------------------------------------------------------


def _folder_tree(root: Path) -> Path:
    for rel in ("real/a.mp4", "real/p1/b.mp4", "fake/c.mp4", "fake/Deepfakes/p1/d.mp4", "fake/FaceSwap/e.mov",
                "fake/.hidden.mp4", "real/readme.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return root


def test_folder_fake_types_groups_and_probe_failures(tmp_path):
    root = _folder_tree(tmp_path / "videos")
    recs = index_dataset(root)
    rows = by_path(recs)
    assert sorted(rows) == ["fake/Deepfakes/p1/d.mp4", "fake/FaceSwap/e.mov", "fake/c.mp4", "real/a.mp4", "real/p1/b.mp4"]
    assert {p: (r.label, r.fake_type) for p, r in rows.items()} == {
        "fake/Deepfakes/p1/d.mp4": (1, "Deepfakes"), "fake/FaceSwap/e.mov": (1, "FaceSwap"),
        "fake/c.mp4": (1, "fake"), "real/a.mp4": (0, "real"), "real/p1/b.mp4": (0, "real"),
    }
    assert rows["real/p1/b.mp4"].group == rows["fake/Deepfakes/p1/d.mp4"].group == "p1"
    assert rows["real/p1/b.mp4"].split == rows["fake/Deepfakes/p1/d.mp4"].split
    assert rows["real/a.mp4"].id == "folder__real-a"
    assert all(r.has_audio is None for r in recs)  # empty files: probed, unreadable -> unknown, no crash
    assert_groups_disjoint(recs)


def test_folder_probe_reads_audio_tracks(tmp_path):
    from video_factory import VideoSpec, make_video

    root = _folder_tree(tmp_path / "videos")
    make_video(root / "real/a.mp4", VideoSpec(seconds=0.2, size=(64, 48), face=False, click_at=0.1))
    make_video(root / "fake/c.mp4", VideoSpec(seconds=0.2, size=(64, 48), face=False))
    rows = by_path(index_dataset(root))
    assert rows["real/a.mp4"].has_audio is True
    assert rows["fake/c.mp4"].has_audio is False
    assert rows["fake/FaceSwap/e.mov"].has_audio is None
    assert all(r.has_audio is None for r in index_dataset(root, probe_audio=False))


def test_colliding_safe_ids_are_made_unique(tmp_path):
    root = tmp_path / "videos"
    for rel in ("real/a b.mp4", "real/a-b.mp4", "fake/x.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    recs = index_dataset(root, probe_audio=False)
    assert_ids_safe_and_unique(recs)


def test_synth_sidecar_adds_manipulations_but_never_relabels(tmp_path):
    import json

    root = _folder_tree(tmp_path / "videos")
    (root / "dfpanel_synth.json").write_text(json.dumps({"videos": {
        "fake/c.mp4": {"label": 1, "fake_type": "blend", "manipulations": ["blend", "colour"],
                       "identity": "s3", "source_identity": "s4", "has_audio": True},
        "real/a.mp4": {"label": 1, "fake_type": "oops", "manipulations": [], "identity": "s3", "has_audio": False},
    }}))
    rows = by_path(index_dataset(root, probe_audio=False))
    c, a = rows["fake/c.mp4"], rows["real/a.mp4"]
    assert c.manipulations == ["blend", "colour"] and c.has_audio is True and c.fake_type == "fake"
    assert (a.label, a.fake_type, a.has_audio) == (0, "real", False)  # sidecar's label 1 ignored
    assert a.group == c.group == "s3" and a.split == c.split


def test_malformed_sidecar_names_file_and_line(tmp_path):
    root = _folder_tree(tmp_path / "videos")
    (root / "dfpanel_synth.json").write_text('{"videos": {\n"fake/c.mp4": {"label": 1,,}}}')
    with pytest.raises(DataError, match=r"dfpanel_synth\.json:2: not valid JSON"):
        index_dataset(root, probe_audio=False)


def test_fakeavceleb_category_folders_one_level_down(favc):
    nested = favc / "FakeAVCeleb"
    nested.mkdir()
    for category in ("RealVideo-RealAudio", "RealVideo-FakeAudio", "FakeVideo-RealAudio", "FakeVideo-FakeAudio"):
        (favc / category).rename(nested / category)
    recs = index_dataset(favc)
    assert len(recs) == 14 and all(r.path.startswith("FakeAVCeleb/") for r in recs)
    assert all((favc / r.path).is_file() for r in recs)


def test_probe_audio_flag_for_datasets_that_do_not_say(celebdf):
    from video_factory import VideoSpec, make_video

    make_video(celebdf / "Celeb-real/id0_0000.mp4", VideoSpec(seconds=0.2, size=(64, 48), face=False, click_at=0.1))
    assert by_path(index_dataset(celebdf))["Celeb-real/id0_0000.mp4"].has_audio is None
    rows = by_path(index_dataset(celebdf, probe_audio=True))
    assert rows["Celeb-real/id0_0000.mp4"].has_audio is True
    assert rows["Celeb-real/id1_0000.mp4"].has_audio is None  # empty file: unknown, not a crash


def test_ffpp_ids_shared_by_pairs_form_one_group(ffpp):
    (ffpp / "splits" / "train.json").write_text('[["071", "054"], ["087", "081"], ["881", "856"], ["087", "054"]]')
    recs = index_dataset(ffpp, "ffpp")
    groups = {r.group for r in recs if r.extra.get("video") in ("071", "054", "087", "081")}
    assert groups == {"pair_054_071_081_087"}
    assert_groups_disjoint(recs)
    (ffpp / "splits" / "test.json").write_text('[["953", "974"], ["881", "974"]]')
    with pytest.raises(DataError, match=r"ids .*881.* are paired across train and test"):
        index_dataset(ffpp, "ffpp")


def test_ffpp_split_entry_of_wrong_shape_is_named(ffpp):
    (ffpp / "splits" / "val.json").write_text('[["720", "672", "001"]]')
    with pytest.raises(DataError, match=r"val\.json: entry 0 is \['720', '672', '001'\], expected a pair"):
        index_dataset(ffpp, "ffpp")


def test_ffpp_any_quality_folder_on_disk_can_be_indexed(ffpp):
    for rel in ("original_sequences/youtube/c0/videos/953.mp4", "manipulated_sequences/Deepfakes/c0/videos/953_974.mp4"):
        (ffpp / rel).parent.mkdir(parents=True, exist_ok=True)
        (ffpp / rel).touch()
    recs = index_dataset(ffpp, "ffpp", compression="c0")
    assert sorted(r.id for r in recs) == ["ffpp__Deepfakes__c0__953_974", "ffpp__original__c0__953"]


def test_dfdc_kaggle_sample_folder_is_one_part(tmp_path):
    import json

    root = tmp_path / "deepfake-detection-challenge"
    (root / "train_sample_videos").mkdir(parents=True)
    meta = {"aagfhgtpmv.mp4": {"label": "FAKE", "split": "train", "original": "vudstovrck.mp4"},
            "vudstovrck.mp4": {"label": "REAL", "split": "train", "original": None}}
    (root / "train_sample_videos" / "metadata.json").write_text(json.dumps(meta))
    for name in meta:
        (root / "train_sample_videos" / name).touch()
    (root / "test_videos").mkdir()  # Kaggle's unlabelled test videos: no labels.csv, not indexed
    (root / "test_videos" / "aassnaulhq.mp4").touch()
    recs = index_dataset(root)
    assert sorted(r.id for r in recs) == ["dfdc__sample__aagfhgtpmv", "dfdc__sample__vudstovrck"]
    assert {(r.chunk, r.extra["part"], r.group) for r in recs} == {(0, None, "vudstovrck")}
