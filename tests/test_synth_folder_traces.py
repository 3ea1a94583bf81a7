"""`dfpanel synth --layout folder --traces ...`: one single-trace fake per real per listed trace."""

from __future__ import annotations

import json

import pytest

from dfpanel.cli import main
from dfpanel.errors import DataError, DfpanelError
from dfpanel.index import index_dataset
from dfpanel.synth import SIDECAR, plan, synthesize
from dfpanel.synth.layouts import MIXED_RECIPES

TRACES = ("face_swap", "relight", "audio_shift")


def test_plan_gives_each_real_one_fake_per_trace_carrying_only_that_trace():
    p = plan("folder", videos=2, seconds=0.5, size=(128, 120), traces=TRACES)
    for clip, outs in p.clips:
        real, *fakes = outs
        assert real.label == 0 and real.path.startswith("real/")
        assert [f.manipulations for f in fakes] == [(t,) for t in TRACES]
        assert [f.path.split("/")[1] for f in fakes] == list(TRACES)
        assert {f.identity_name for f in fakes} == {real.identity_name}
        assert {f.split for f in fakes} == {real.split}
        assert [f.source is not None for f in fakes] == [t == "face_swap" for t in TRACES]
    # without --traces the folder layout is unchanged: one mixed-recipe fake per real
    plain = plan("folder", videos=2, seconds=0.5, size=(128, 120))
    assert [[o.path for o in outs] for _, outs in plain.clips] == [
        [f"real/real_{k:04d}.mp4", f"fake/fake_{k:04d}.mp4"] for k in range(2)]
    assert [outs[1].manipulations for _, outs in plain.clips] == list(MIXED_RECIPES[:2])


def test_traces_are_in_the_sidecar_index_as_fake_types_and_other_traces_are_refused(tmp_path):
    kw = dict(videos=1, seconds=0.5, size=(128, 120), fps=10, progress=False, seed=3)
    sidecar = synthesize("folder", tmp_path, traces=("relight", "recompress"), **kw)
    assert sidecar["params"]["traces"] == ["relight", "recompress"]
    assert sorted(sidecar["videos"]) == ["fake/recompress/fake_0000.mp4", "fake/relight/fake_0000.mp4",
                                         "real/real_0000.mp4"]
    rows = index_dataset(tmp_path, "folder")
    assert sorted(r.fake_type for r in rows) == ["real", "recompress", "relight"]
    assert len({r.group for r in rows}) == 1 and len({r.split for r in rows}) == 1
    with pytest.raises(DataError, match="other parameters"):
        synthesize("folder", tmp_path, traces=("relight",), **kw)
    with pytest.raises(DataError, match="other parameters"):
        synthesize("folder", tmp_path, **kw)  # the mixed-recipe folder is another set too
    synthesize("folder", tmp_path, traces=("relight", "recompress", "relight"), **kw)  # same set: resumes


@pytest.mark.parametrize(
    "layout, traces, message",
    [
        ("folder", ("face_swap", "deepfake"), "deepfake: unknown trace"),
        ("folder", (), "unknown trace"),
        ("dfdc", ("face_swap",), "folder only"),
    ],
)
def test_bad_traces_are_one_line_user_errors(tmp_path, layout, traces, message):
    with pytest.raises(DfpanelError, match=message) as err:
        synthesize(layout, tmp_path / "x", videos=1, seconds=0.2, traces=traces, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()


def test_cli_traces_option(tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(["synth", "--layout", "folder", "--out", str(out), "--videos", "1", "--seconds", "0.3",
                 "--size", "128x120", "--fps", "10", "--traces", "temporal_jitter,audio_replace"])
    assert code == 0
    sidecar = json.loads((out / SIDECAR).read_text())
    assert {e["fake_type"]: e["manipulations"] for e in sidecar["videos"].values() if e["label"]} == {
        "temporal_jitter": ["temporal_jitter"], "audio_replace": ["audio_replace"]}
    assert all((out / rel).is_file() for rel in sidecar["videos"])
    code = main(["synth", "--layout", "ffpp", "--out", str(tmp_path / "e"), "--traces", "relight"])
    err = capsys.readouterr().err
    assert code == 2 and "folder only" in err and "Traceback" not in err
