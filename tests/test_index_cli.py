"""`dfpanel index` and layout detection: the manifest written, the summary shown, one-line errors."""

from __future__ import annotations

import json

import pytest
from fixtures.index_tree import build

from dfpanel.cli import main
from dfpanel.errors import DataError
from dfpanel.index import LAYOUT_NAMES, detect_layout, index_dataset
from dfpanel.index.manifest import read_manifest

FIXTURE_LAYOUTS = {"ffpp": "ffpp", "celebdf": "celebdf", "dfdc": "dfdc", "fakeavceleb": "fakeavceleb"}


def test_layout_names_in_detection_order():
    assert LAYOUT_NAMES == ("ffpp", "celebdf", "dfdc", "fakeavceleb", "folder")


@pytest.mark.parametrize("name", sorted(FIXTURE_LAYOUTS))
def test_each_real_layout_is_detected(tmp_path, name):
    root = build(name, tmp_path)
    assert detect_layout(root) == FIXTURE_LAYOUTS[name]
    assert {r.dataset for r in index_dataset(root)} == {name}


def test_unknown_root_names_every_layout_tried(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError) as exc:
        detect_layout(tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path) in msg
    for name in LAYOUT_NAMES:
        assert f"{name} (needs" in msg
    assert "original_sequences" in msg and "List_of_testing_videos.txt" in msg and "meta_data.csv" in msg


def test_parent_folder_hints_at_the_dataset_inside(tmp_path):
    build("dfdc", tmp_path)
    with pytest.raises(DataError, match=r"did you mean a sub-folder\? dfdc/ looks like dfdc"):
        index_dataset(tmp_path)


def test_wrong_dataset_flag_names_the_missing_file(tmp_path):
    root = build("celebdf", tmp_path)
    with pytest.raises(DataError, match=r"splits/train\.json: not found"):
        index_dataset(root, "ffpp")
    with pytest.raises(DataError, match=r"meta_data\.csv: not found"):
        index_dataset(root, "fakeavceleb")
    with pytest.raises(DataError, match=r"unknown dataset 'celeb'; choose one of ffpp, celebdf"):
        index_dataset(root, "celeb")
    assert {r.dataset for r in index_dataset(root, "Celeb-DF")} == {"celebdf"}


def test_empty_layout_is_an_error(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    with pytest.raises(DataError, match="no videos found for dataset folder"):
        index_dataset(tmp_path)


def test_cli_writes_manifest_and_prints_summary(tmp_path, capsys):
    root = build("ffpp", tmp_path)
    out = tmp_path / "m" / "manifest.jsonl"
    assert main(["index", str(root), "--out", str(out)]) == 0
    rows = read_manifest(out)
    assert len(rows) == 30
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) >= {"id", "path", "label", "fake_type", "split", "dataset", "group", "has_audio", "chunk", "root"}
    assert first["root"] == str(root.resolve())
    text = capsys.readouterr().out
    assert "ffpp: 30 videos" in text and "Deepfakes" in text and "FaceSwap" in text
    assert "wrote 30 rows" in text
    table = [ln for ln in text.splitlines() if ln.strip("│ ").startswith("videos")][0]
    assert [c.strip() for c in table.strip("│ ").split("│")][1:] == ["18", "6", "6", "30"]


def test_cli_dfdc_options_and_note_on_shared_groups(tmp_path, capsys):
    root = build("dfdc", tmp_path)
    out = tmp_path / "dfdc.jsonl"
    assert main(["index", str(root), "-d", "dfdc", "--dfdc-chunks", "2", "-o", str(out)]) == 0
    assert {r.chunk for r in read_manifest(out) if r.split != "test"} == {0, 1}
    celeb = build("celebdf", tmp_path)
    assert main(["index", str(celeb), "--out", str(tmp_path / "c.jsonl")]) == 0
    assert "appear in more than one split" in capsys.readouterr().out  # Celeb-DF's official test shares ids


def test_cli_user_mistakes_are_one_line_exit_2(tmp_path, capsys):
    assert main(["index", str(tmp_path / "nope"), "--out", str(tmp_path / "m.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "dataset folder not found" in err and "Traceback" not in err
    root = build("ffpp", tmp_path)
    assert main(["index", str(root), "--dataset", "bogus", "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "unknown dataset 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "m.jsonl").exists()
