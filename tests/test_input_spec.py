"""InputSpec: its record in the cache and in weights sidecars, old caches and weights, audio normalised
once (the WAV holds exactly the in-memory floats), and refusals of mixed caches."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from dfpanel.cli import main
from dfpanel.errors import ConfigError, WeightsError
from dfpanel.extract.cache import (
    normalise_audio,
    read_cache_spec,
    read_wav,
    record_cache_spec,
    write_wav,
)
from dfpanel.extract.run import ExtractConfig, run_extraction
from dfpanel.extract.spec import DEFAULT_SPEC, LEGACY_SPEC, SPEC_FILE, InputSpec
from dfpanel.index.manifest import VideoRecord, write_manifest


def test_spec_round_trips_ignores_future_keys_and_rejects_bad_values():
    spec = InputSpec(min_face_size=60, track="interpolate", faces="all", context_scale=1.5, frames=16)
    d = json.loads(json.dumps(spec.to_dict()))
    assert InputSpec.from_dict(d) == spec and d["version"] == 1
    assert InputSpec.from_dict({**d, "denoise": "strong", "version": 2}).min_face_size == 60  # a newer dfpanel's key
    # missing keys: defaults, but storage: a spec from before compact storage means full crops
    assert InputSpec.from_dict({"frames": 16}) == InputSpec(frames=16, store="full")
    assert InputSpec.from_dict({"context_scale": 2}).context_scale == 2.0
    for bad, words in (({"track": "guess"}, "track='guess' must be one of refine, interpolate"),
                       ({"min_face_size": "40"}, "min_face_size='40' must be a whole number"),
                       ({"frames": 0}, "frames=0 must be at least 1"),
                       ({"min_score": 1.5}, "min_score=1.5 must be between 0 and 1"),
                       ({"audio_norm": "float"}, "audio_norm='float' must be one of pcm16")):  # fmt: skip
        with pytest.raises(ConfigError) as exc:
            InputSpec.from_dict(bad, source="x/input_spec.json")
        assert str(exc.value).startswith("x/input_spec.json: ") and words in str(exc.value)
        assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="unknown input setting"):
        DEFAULT_SPEC.replace(min_face=3)


def test_difference_in_one_line_and_frames_are_only_sampling_density():
    a = InputSpec(min_face_size=40, track="refine", frames=16)
    b = a.replace(min_face_size=60, track="interpolate", frames=32)
    assert a.describe_difference(b) == "min_face_size 40 vs 60, track refine vs interpolate, frames 16 vs 32"
    assert a.describe_difference(b, sampling=False) == "min_face_size 40 vs 60, track refine vs interpolate"
    assert "frames" not in InputSpec.shaping_fields() and "context_scale" in InputSpec.shaping_fields()
    assert a.same_views(a.replace(frames=8)) and not a.same_views(a.replace(context_scale=2.5))
    assert InputSpec().extract_args().startswith("--frames 32 --clip-len 8 --detector mtcnn --min-face-size 40")


def test_extract_config_carries_the_spec_and_operational_settings_stay_outside():
    cfg = ExtractConfig(frames=16, all_faces=True, device="cpu", decode_threads=2)
    assert cfg.spec == InputSpec(frames=16, faces="all") and cfg.all_faces and cfg.frames == 16
    assert "device" not in cfg.spec.to_dict() and "decode_threads" not in cfg.spec.to_dict()
    assert ExtractConfig(cfg.spec).spec is cfg.spec
    from dataclasses import replace

    assert replace(cfg, decode_threads=1).spec == cfg.spec


def test_audio_is_normalised_once_and_the_wav_gives_back_the_same_floats(tmp_path):
    rng = np.random.default_rng(0)
    decoded = (rng.standard_normal(16000) * 0.7).astype(np.float32)  # loud: many samples beyond +-1
    decoded[:3] = [1.2, -1.7, 1.0]
    assert np.abs(decoded).max() > 1
    held = normalise_audio(decoded)
    assert held.dtype == np.float32 and held.max() < 1.0 and held.min() >= -1.0
    assert np.array_equal(normalise_audio(held), held)  # idempotent
    write_wav(tmp_path / "a.wav", held)
    assert np.array_equal(read_wav(tmp_path / "a.wav"), held)  # bit-equal, not merely close
    assert np.abs(held - np.clip(decoded, -1, 1)).max() <= 1 / 32768


def _bogus_manifest(tmp_path):
    manifest = tmp_path / "m.jsonl"
    write_manifest([VideoRecord(id="v", path=str(tmp_path / "missing.mp4"), label=0, fake_type="real",
                                split="train", dataset="folder", group="v")], manifest)  # fmt: skip
    return manifest


def test_extraction_records_the_spec_and_refuses_to_mix_settings(tmp_path, capsys):
    manifest, cache = _bogus_manifest(tmp_path), tmp_path / "cache"
    spec = InputSpec(frames=8, clip_len=4, min_face_size=40)
    run_extraction(manifest, cache, ExtractConfig(spec), progress=False)  # the video fails; the spec is recorded
    assert read_cache_spec(cache) == spec
    assert json.loads((cache / SPEC_FILE).read_text())["min_face_size"] == 40
    run_extraction(manifest, cache, ExtractConfig(spec.replace(frames=16)), progress=False)  # density only: fine
    with pytest.raises(ConfigError) as exc:
        run_extraction(manifest, cache, ExtractConfig(spec.replace(min_face_size=60, track="interpolate")), progress=False)
    assert "min_face_size 40 vs 60, track refine vs interpolate" in str(exc.value)
    code = main(["extract", str(manifest), "--out", str(cache), "--frames", "8", "--clip-len", "4",
                 "--context-scale", "1.5", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "context_scale 2.0 vs 1.5" in err and "Traceback" not in err
    assert read_cache_spec(cache) == spec  # unchanged


def test_cache_entries_record_their_spec_in_meta(tmp_path):
    from video_factory import VideoSpec, make_video

    from dfpanel.extract.video import extract_video

    path = make_video(tmp_path / "v.mp4", VideoSpec(seconds=0.4, click_at=0.2, square=0.9))
    spec = InputSpec(frames=4, clip_len=4, context_scale=1.6)
    ((meta, crops, audio),) = extract_video(path, ExtractConfig(spec))
    assert InputSpec.from_dict(meta.input_spec) == spec
    assert audio.dtype == np.float32 and np.array_equal(audio, normalise_audio(audio)) and audio.max() < 1.0


def test_an_old_cache_reads_as_the_default_spec_with_a_warning(tmp_path, caplog):
    (tmp_path / "index.jsonl").touch()
    with caplog.at_level(logging.WARNING):
        assert read_cache_spec(tmp_path) == LEGACY_SPEC == DEFAULT_SPEC.replace(store="full")
        assert read_cache_spec(tmp_path) == LEGACY_SPEC
    assert sum("no input_spec.json" in r.getMessage() for r in caplog.records) == 1
    # extracting into it: the default settings of its time are accepted (nothing written), others refused
    assert record_cache_spec(tmp_path, LEGACY_SPEC.replace(frames=8)) == LEGACY_SPEC
    assert not (tmp_path / SPEC_FILE).exists()
    with pytest.raises(ConfigError, match="clip_len 8 vs 4"):
        record_cache_spec(tmp_path, LEGACY_SPEC.replace(clip_len=4))
    with pytest.raises(ConfigError, match="store full vs compact"):  # today's default: compact storage
        record_cache_spec(tmp_path, DEFAULT_SPEC)


def test_merge_refuses_caches_of_different_settings(tmp_path):
    from dfpanel.extract.merge import merge_caches

    a, b = tmp_path / "a", tmp_path / "b"
    for root, spec in ((a, InputSpec(min_face_size=40)), (b, InputSpec(min_face_size=50))):
        record_cache_spec(root, spec)
        (root / "index.jsonl").touch()
    with pytest.raises(ConfigError, match="min_face_size 50 vs 40"):
        merge_caches(tmp_path / "out", [a, b])
    merge_caches(tmp_path / "out", [a, a])
    assert read_cache_spec(tmp_path / "out") == InputSpec(min_face_size=40)


def test_old_sidecar_without_input_spec_works_with_one_warning(tmp_path, caplog):
    from dfpanel.inference.runners import load_runners
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.folder import find_weights
    from dfpanel.weights.io import save_weights

    save_weights(create_specialist("cm", backbone="tiny", image_size=64, pretrained=False), tmp_path / "cm", {"stage": "old"})
    with caplog.at_level(logging.WARNING):
        (r,) = load_runners(tmp_path)
        (r2,) = load_runners(tmp_path)
    assert r.input_spec == r2.input_spec == LEGACY_SPEC  # weights of their time: full crops
    assert sum("has no input_spec" in rec.getMessage() for rec in caplog.records) == 1
    side = json.loads((tmp_path / "cm.json").read_text())
    side["input_spec"] = {"track": "sideways"}
    (tmp_path / "cm.json").write_text(json.dumps(side))
    with pytest.raises(WeightsError, match="cm.safetensors sidecar input_spec: track='sideways'"):
        find_weights(tmp_path)[0].input_spec


def test_onnx_export_carries_the_input_spec(tmp_path):
    from dfpanel.models.specialists.base import create_specialist
    from dfpanel.weights.export import export_folder
    from dfpanel.weights.folder import find_weights
    from dfpanel.weights.io import save_weights

    spec = InputSpec(frames=12, min_face_size=30)
    torch.manual_seed(0)
    model = create_specialist("cm", backbone="tiny", image_size=64, pretrained=False).eval()
    save_weights(model, tmp_path / "w" / "cm", {"input_spec": spec.to_dict()})
    export_folder(tmp_path / "w", tmp_path / "onnx", verify=False)
    (onnx,) = find_weights(tmp_path / "onnx", "onnx")
    assert onnx.input_spec == spec


def test_training_copies_the_cache_spec_into_the_sidecar(tmp_path):
    from factories import cache_on_disk as make_cache
    from train_fakes import tiny_config

    from dfpanel.train.stage import train_stage

    cache = make_cache(tmp_path / "cache", counts={"train": (2, 2), "val": (1, 1)})
    spec = InputSpec(frames=8, clip_len=4, min_face_size=24, context_scale=1.7)
    (cache / SPEC_FILE).write_text(json.dumps(spec.to_dict()))
    result = train_stage(tiny_config(cache, "fakeframe", "trainer.max_steps=1", "trainer.max_epochs=1"),
                         tmp_path / "run", progress=False)  # fmt: skip
    side = json.loads((tmp_path / "run" / "best.json").read_text())
    assert InputSpec.from_dict(side["input_spec"]) == spec
    assert json.loads((tmp_path / "run" / "run.json").read_text())["input_spec"] == spec.to_dict()
    assert result["weights"].endswith("best.safetensors")
