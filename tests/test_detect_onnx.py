"""Real (tiny, random-init) specialists through detection: `dfpanel export` writes what
`detect --backend onnx` reads, and the onnxruntime backend agrees with torch within 1e-4."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from detect_fakes import fake_extract
from video_factory import VideoSpec, make_video

from dfpanel.cli import main
from dfpanel.detect.pipeline import DetectConfig, PanelDetector
from dfpanel.inference.runners import load_runners
from dfpanel.models.specialists.base import create_specialist
from dfpanel.panel.combiner import Panel, load_panel
from dfpanel.weights.export import export_folder
from dfpanel.weights.folder import find_weights
from dfpanel.weights.io import save_weights

TINY = dict(backbone="tiny", image_size=64, clip_len=4)


def save_tiny(folder, names, seed=0):
    torch.manual_seed(seed)
    for name in names:
        save_weights(create_specialist(name, **TINY).eval(), folder / f"{name}_tiny", {"stage": "test"})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """CM and TM weights; only TM exported (an export takes seconds on a busy CPU; the slow test
    below covers all five)."""
    root = tmp_path_factory.mktemp("w")
    save_tiny(root / "weights", ["cm", "tm"])
    Panel(threshold=0.45).save(root / "weights")
    code = main(["export", "--weights", str(root / "weights"), "--out", str(root / "onnx"), "--only", "tm"])
    video = make_video(root / "talk.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))
    return root / "weights", root / "onnx", video, code


def check_backends_agree(wdir, onnx_dir, video, names):
    rt = PanelDetector(load_runners(wdir, "torch", only=names), load_panel(wdir), DetectConfig(clip_len=4),
                       extract=fake_extract).analyse(video).report
    ro = PanelDetector(load_runners(onnx_dir, "onnx"), load_panel(onnx_dir), DetectConfig(clip_len=4, backend="onnx"),
                       extract=fake_extract).analyse(video).report
    assert rt["status"] == ro["status"] == "analysed" and ro["backend"] == "onnx"
    st, so = {s["name"]: s for s in rt["specialists"]}, {s["name"]: s for s in ro["specialists"]}
    assert sorted(st) == sorted(so) == sorted(names) and all(s["status"] == "scored" for s in st.values())
    for name in st:
        assert so[name]["probability"] == pytest.approx(st[name]["probability"], abs=1e-4)
        assert [x["prob"] for x in so[name]["samples"]] == pytest.approx([x["prob"] for x in st[name]["samples"]], abs=1e-4)
        assert so[name]["weights_id"] == st[name]["weights_id"]
    assert ro["panel"]["probability"] == pytest.approx(rt["panel"]["probability"], abs=1e-4)
    assert ro["verdict"] == rt["verdict"]


def test_export_command_writes_onnx_with_the_weights_ids_and_panel(folders):
    wdir, onnx_dir, _, code = folders
    assert code == 0
    onnx_files = find_weights(onnx_dir, "onnx")
    assert [f.specialist for f in onnx_files] == ["tm"]  # --only
    tm_torch = next(f for f in find_weights(wdir, "torch") if f.specialist == "tm")
    side = onnx_files[0].sidecar
    assert side["sha256"] == tm_torch.sidecar["sha256"]  # reports name the same weights
    assert side["max_abs_diff"] <= 1e-4 and side["stage"] == "test" and side["source"] == "tm_tiny.safetensors"
    assert json.loads((onnx_dir / "panel.json").read_text())["threshold"] == 0.45
    assert main(["export", "--weights", str(onnx_dir / "missing"), "--out", str(onnx_dir / "x")]) == 2


def test_onnx_backend_matches_torch_within_1e4(folders):
    wdir, onnx_dir, video, _ = folders
    check_backends_agree(wdir, onnx_dir, video, ["tm"])


@pytest.mark.slow
def test_onnx_backend_matches_torch_for_all_five(tmp_path):
    five = ["av", "bg", "cm", "rr", "tm"]  # not list_specialists(): other tests register stand-ins there
    save_tiny(tmp_path / "weights", five)
    export_folder(tmp_path / "weights", tmp_path / "onnx")
    video = make_video(tmp_path / "talk.mp4", VideoSpec(seconds=0.6, size=(160, 120), face_height=60))
    check_backends_agree(tmp_path / "weights", tmp_path / "onnx", video, five)


def test_real_av_abstains_on_a_silent_video_and_scores_with_audio(folders, tmp_path):
    wdir, _, video, _ = folders
    save_tiny(tmp_path / "w", ["av"], seed=1)
    for suffix in (".safetensors", ".json"):
        shutil.copy(wdir / f"tm_tiny{suffix}", tmp_path / "w")
    silent = shutil.copy(video, tmp_path / "silent.mp4")
    det = PanelDetector(load_runners(tmp_path / "w", "torch"), Panel(), DetectConfig(clip_len=4), extract=fake_extract)
    r = det.analyse(silent).report
    s = {x["name"]: x for x in r["specialists"]}
    assert s["av"]["status"] == "abstained" and s["tm"]["status"] == "scored"
    assert r["panel"]["probability"] == pytest.approx(s["tm"]["probability"])
    with_audio = {x["name"]: x for x in det.analyse(video).report["specialists"]}
    assert with_audio["av"]["status"] == "scored" and len(with_audio["av"]["samples"]) == 3
