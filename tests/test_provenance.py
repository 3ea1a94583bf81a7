"""Weights say what they learned from: the synthetic flag from `dfpanel synth` through index, cache and
training into the sidecar's provenance (inherited through init_from), the one sidecar reader, and the
demonstration notice in detection's outputs when a specialist learned only from synthetic data."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from detect_fakes import fake_extract
from factories import cache_on_disk as make_cache
from factories import extracted_track as fake_track
from train_fakes import tiny_config
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.detect.pipeline import PanelDetector
from dfpanel.errors import WeightsError
from dfpanel.extract.cache import FaceTrackCache, append_index_row
from dfpanel.extract.run import write_tracks
from dfpanel.index import index_dataset
from dfpanel.index.manifest import VideoRecord, iter_manifest, write_manifest
from dfpanel.report.schema import validate_report
from dfpanel.train.stage import train_stage
from dfpanel.weights.folder import find_weights
from dfpanel.weights.sidecar import chain_provenance, read_sidecar, training_data


def mark_synthetic(cache: Path, value) -> Path:
    """Rewrite a cache index as `extract` now writes it: each row says whether synth made its video."""
    index = cache / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
    index.write_text("".join(json.dumps({**r, "synthetic": value}) + "\n" for r in rows))
    return cache


# ---- index and cache -------------------------------------------------------------------------------


def test_index_marks_the_videos_synth_made_and_an_old_manifest_reads_unknown(tmp_path):
    root = tmp_path / "videos"
    for rel in ("real/a.mp4", "real/b.mp4", "fake/c.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    plain = {r.path: r.synthetic for r in index_dataset(root, probe_audio=False)}
    assert plain == {"real/a.mp4": False, "real/b.mp4": False, "fake/c.mp4": False}
    (root / "dfpanel_synth.json").write_text(json.dumps({"videos": {
        "real/a.mp4": {"label": 0, "identity": "s1"}, "fake/c.mp4": {"label": 1, "identity": "s2"}}}))
    recs = index_dataset(root, probe_audio=False)
    assert {r.path: r.synthetic for r in recs} == {"real/a.mp4": True, "real/b.mp4": False, "fake/c.mp4": True}

    manifest = tmp_path / "m.jsonl"
    write_manifest(recs, manifest)
    assert {r.path: r.synthetic for r in iter_manifest(manifest)}["fake/c.mp4"] is True
    old = [{k: v for k, v in json.loads(line).items() if k != "synthetic"} for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert {r.synthetic for r in iter_manifest(manifest)} == {None}  # not stated: neither synthetic nor real


def test_extract_carries_the_flag_into_the_cache_and_an_old_cache_reads_unknown(tmp_path):
    out = tmp_path / "cache"
    for vid, flag in (("s", True), ("r", False), ("u", None)):
        rec = VideoRecord(id=vid, path=f"{vid}.mp4", label=0, fake_type="real", split="train", dataset="folder",
                          group=vid, synthetic=flag)
        meta, crops, audio = fake_track(n_clips=1)
        meta.video_id = vid
        for row in write_tracks(out, [(meta, crops, audio)], rec):
            append_index_row(out, row)
    assert {r.id: r.synthetic for r in FaceTrackCache(out).rows()} == {"s": True, "r": False, "u": None}
    make_cache(tmp_path / "old")  # rows written without the field, as before this change
    assert {r.synthetic for r in FaceTrackCache(tmp_path / "old").rows()} == {None}


# ---- the one sidecar reader --------------------------------------------------------------------------


@pytest.mark.parametrize("text, match", [
    (None, "no sidecar x.json next to it"),
    ("{oops", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"stage": "ffpp"}', "does not say which specialist"),
    ('{"specialist": "cm", "provenance": {"datasets": "ffpp"}}', "provenance has no list of datasets"),
    ('{"specialist": "cm", "provenance": {"datasets": [{"name": "ffpp", "synthetic": "yes"}]}}',
     r"datasets\[0\]\.synthetic must be true, false or null"),
    ('{"specialist": "cm", "model_config": [1]}', "model_config must be a mapping"),
])
def test_read_sidecar_gives_one_line_errors_naming_the_file(tmp_path, text, match):
    weights = tmp_path / "x.safetensors"
    if text is not None:
        weights.with_suffix(".json").write_text(text)
    with pytest.raises(WeightsError, match=match) as err:
        read_sidecar(weights, need=("specialist",))
    assert "x.json" in str(err.value) and "\n" not in str(err.value)


def test_every_reader_goes_through_read_sidecar(tmp_path):
    """A folder (torch and ONNX), eval and load_weights refuse the same broken sidecar the same way."""
    import torch
    from safetensors.torch import save_file

    from dfpanel.evaluate.run import read_sidecar as eval_read
    from dfpanel.weights.io import load_weights

    save_file({"w": torch.zeros(1)}, str(tmp_path / "cm.safetensors"))
    (tmp_path / "cm.json").write_text('{"specialist": "cm", "provenance": 3}')
    (tmp_path / "cm.onnx").write_bytes(b"")
    (tmp_path / "cm.onnx.json").write_text('{"specialist": "cm", "provenance": 3}')
    for call in (lambda: find_weights(tmp_path), lambda: find_weights(tmp_path, "onnx"),
                 lambda: eval_read(tmp_path / "cm.safetensors"), lambda: load_weights(tmp_path / "cm.safetensors")):
        with pytest.raises(WeightsError, match="provenance must be a mapping"):
            call()


def test_training_data_of_a_chain():
    synth = {"name": "ffpp", "synthetic": True}
    real = {"name": "dfdc", "synthetic": False}
    unknown = {"name": "celebdf", "synthetic": None}
    assert training_data({"provenance": chain_provenance(None, [synth], has_parent=False)}) == "synthetic"
    assert training_data({"provenance": chain_provenance(None, [synth, real], has_parent=False)}) == "real"
    assert training_data({"provenance": chain_provenance(None, [synth, unknown], has_parent=False)}) == "unknown"
    assert training_data({}) == training_data(None) == "unknown"  # made before provenance, or elsewhere
    orphan = chain_provenance({}, [synth], has_parent=True)  # its parent recorded nothing
    assert orphan["complete"] is False and orphan["synthetic_only"] is False
    assert training_data({"provenance": orphan}) == "unknown"


# ---- training records provenance and passes it on ----------------------------------------------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Stage 1 on a synthetic "ffpp" cache, stage 2 from its weights on a synthetic "celebdf" cache."""
    root = tmp_path_factory.mktemp("prov")
    ffpp = mark_synthetic(make_cache(root / "ffpp"), True)
    celebdf = mark_synthetic(make_cache(root / "celebdf", dataset="celebdf", seed=1), True)
    first = train_stage(tiny_config(ffpp, "fakeframe", "trainer.max_epochs=1"), root / "runs" / "s1", progress=False)
    second = train_stage(tiny_config(celebdf, "fakeframe", "trainer.max_epochs=1", f"init_from={first['weights']}"),
                         root / "runs" / "s2", progress=False)
    return root, first, second


def test_weights_record_their_datasets_and_inherit_the_parents(chain):
    _, first, second = chain
    p1 = read_sidecar(first["weights"])["provenance"]
    assert p1["complete"] and p1["synthetic_only"]
    (d,) = p1["datasets"]
    assert d["name"] == "ffpp" and d["synthetic"] is True and d["splits"] == {"train": 12, "val": 6}
    assert d["videos"] == 18 and d["synthetic_videos"] == 18 and len(d["manifest_hash"]) == 64
    p2 = read_sidecar(second["weights"])["provenance"]
    assert [x["name"] for x in p2["datasets"]] == ["ffpp", "celebdf"]  # stage 2 still says it learned ffpp
    assert p2["datasets"][0] == d and p2["synthetic_only"] and p2["complete"]


def test_a_parent_without_provenance_leaves_the_chain_unknown(chain):
    root, first, _ = chain
    parent = root / "legacy.safetensors"
    shutil.copy(first["weights"], parent)
    side = read_sidecar(first["weights"])
    side.pop("provenance")
    parent.with_suffix(".json").write_text(json.dumps(side))
    real = make_cache(root / "real", dataset="dfdc", seed=2)
    mark_synthetic(real, False)
    child = train_stage(tiny_config(root / "ffpp", "fakeframe", "trainer.max_steps=2", f"init_from={parent}"),
                        root / "runs" / "orphan", progress=False)
    prov = read_sidecar(child["weights"])["provenance"]
    assert prov["complete"] is False and not prov["synthetic_only"]
    assert training_data(read_sidecar(child["weights"])) == "unknown"
    on_real = train_stage(tiny_config(real, "fakeframe", "trainer.max_steps=2", f"init_from={first['weights']}"),
                          root / "runs" / "real", progress=False)
    assert training_data(read_sidecar(on_real["weights"])) == "real"  # it saw videos synth did not make


def test_fetch_keeps_the_provenance(chain, tmp_path, monkeypatch):
    from dfpanel.weights.install import fetch_weights
    from dfpanel.weights.io import file_sha256

    _, _, second = chain
    monkeypatch.setenv("DFPANEL_CACHE", str(tmp_path / "dl"))
    url = Path(second["weights"]).resolve().as_uri()
    installed = fetch_weights(url, sha256=file_sha256(second["weights"]), out=tmp_path / "w", progress=False)
    assert installed.name == "fakeframe.safetensors"
    assert read_sidecar(installed)["provenance"] == read_sidecar(second["weights"])["provenance"]


def test_onnx_export_keeps_the_provenance(tmp_path):
    from factories import SMALL_SPECIALIST as SMALL

    from dfpanel.models.specialists import create_specialist
    from dfpanel.weights.export import export_folder
    from dfpanel.weights.io import save_weights

    prov = chain_provenance(None, [{"name": "ffpp", "synthetic": True}], has_parent=False)
    save_weights(create_specialist("cm", **SMALL).eval(), tmp_path / "w" / "cm", {"stage": "ffpp", "provenance": prov})
    (dest,) = export_folder(tmp_path / "w", tmp_path / "onnx", verify=False)
    assert read_sidecar(dest)["provenance"] == prov
    (wf,) = find_weights(tmp_path / "onnx", "onnx")
    assert wf.info["training_data"] == "synthetic" and wf.info["datasets"] == ["ffpp"]


# ---- detection says so -------------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path):
    return make_video(tmp_path / "clip.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))


@pytest.fixture
def in_memory_extraction(monkeypatch):
    real_init = PanelDetector.__init__

    def init(self, runners, panel, cfg=None, extract=None):
        real_init(self, runners, panel, cfg, extract or fake_extract)

    monkeypatch.setattr(PanelDetector, "__init__", init)


def detect_with(weights: Path, clip: Path, out: Path, capsys) -> tuple[dict, str, str]:
    videos = out.parent / f"{out.name}_videos"
    videos.mkdir()
    shutil.copy(clip, videos / "talk.mp4")
    assert main(["detect", str(videos), "--weights", str(weights), "--out", str(out)]) == 0
    cap = capsys.readouterr()
    return validate_report(json.loads((out / "talk" / "report.json").read_text())), cap.out, cap.err


def test_detect_with_trained_synthetic_weights_says_it_is_a_demonstration(chain, clip, tmp_path, capsys,
                                                                          in_memory_extraction):
    _, _, second = chain
    wdir = tmp_path / "weights"
    wdir.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(Path(second["weights"]).with_suffix(suffix), wdir / f"fakeframe{suffix}")
    out = tmp_path / "out"
    report, stdout, stderr = detect_with(wdir, clip, out, capsys)
    td = report["training_data"]
    assert td["demonstration"] and td["synthetic_only"] == ["fakeframe"] and td["unknown"] == []
    assert "not evidence about a real video" in td["notice"] and "dfpanel weights fetch" in td["notice"]
    assert report["weights"]["fakeframe"]["datasets"] == ["ffpp", "celebdf"]
    line = next(x for x in stdout.splitlines() if "talk.mp4" in x)
    assert "DEMO: FAKEFRAME learned only from synthetic data" in line
    assert "Demonstration only" in stderr
    page = (out / "talk" / "report.html").read_text()
    assert 'class="demo"' in page and page.index('class="demo"') < page.index("<h1>")  # at the top
    summary = (out / "summary.html").read_text()
    assert 'class="demo"' in summary and summary.index('class="demo"') < summary.index("<h1>")
    (row,) = csv.DictReader(open(out / "summary.csv"))
    assert row["training_data"] == "synthetic only: FAKEFRAME"


def test_detect_with_weights_from_real_datasets_shows_no_banner(chain, clip, tmp_path, capsys, in_memory_extraction):
    _, _, second = chain
    wdir = tmp_path / "weights"
    wdir.mkdir()
    shutil.copy(second["weights"], wdir / "fakeframe.safetensors")
    side = read_sidecar(second["weights"])
    for d in side["provenance"]["datasets"]:  # as if indexed from FF++ and Celeb-DF themselves
        d["synthetic"], d["synthetic_videos"] = False, 0
    side["provenance"]["synthetic_only"] = False
    (wdir / "fakeframe.json").write_text(json.dumps(side))
    out = tmp_path / "out"
    report, stdout, stderr = detect_with(wdir, clip, out, capsys)
    td = report["training_data"]
    assert td == {"demonstration": False, "synthetic_only": [], "real": ["fakeframe"], "unknown": [],
                  "notice": None, "note": None}
    assert "DEMO" not in stdout and "Demonstration" not in stderr and "unknown" not in stdout
    assert 'class="demo"' not in (out / "talk" / "report.html").read_text()
    assert 'class="demo"' not in (out / "summary.html").read_text()
    assert next(csv.DictReader(open(out / "summary.csv")))["training_data"] == "real datasets"


def test_weights_without_provenance_get_a_neutral_note_not_the_banner(chain, clip, tmp_path, capsys,
                                                                      in_memory_extraction):
    _, first, _ = chain
    wdir = tmp_path / "weights"
    wdir.mkdir()
    shutil.copy(first["weights"], wdir / "fakeframe.safetensors")
    side = read_sidecar(first["weights"])
    side.pop("provenance")
    (wdir / "fakeframe.json").write_text(json.dumps(side))
    report, stdout, _ = detect_with(wdir, clip, tmp_path / "out", capsys)
    td = report["training_data"]
    assert not td["demonstration"] and td["notice"] is None and td["unknown"] == ["fakeframe"]
    assert "Training data unknown for FAKEFRAME" in td["note"]
    assert "training data unknown: FAKEFRAME" in stdout and "DEMO" not in stdout
    page = (tmp_path / "out" / "talk" / "report.html").read_text()
    assert 'class="demo"' not in page and 'class="note"' in page
