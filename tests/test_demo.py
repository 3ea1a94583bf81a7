"""`dfpanel demo`: the README's main command."""

from __future__ import annotations

import json

import pytest

from dfpanel.cli import main
from dfpanel.demo import (
    DemoPlan,
    StepFailed,
    collect_weights,
    held_out_videos,
    run_demo,
)
from dfpanel.index.manifest import VideoRecord, write_manifest


def _rows(layout, root):
    out = []
    for split in ("train", "val", "test"):
        for label in (0, 1):
            for k in range(2):
                out.append(VideoRecord(id=f"{layout}_{split}_{label}_{k}", path=f"{split}/{label}_{k}.mp4", label=label,
                                       fake_type="real" if label == 0 else "x", split=split, dataset=layout,
                                       group=f"g{k}", root=str(root)))
    return out


def test_held_out_videos_are_test_videos_of_both_labels_from_every_dataset(tmp_path):
    plan = DemoPlan(out=tmp_path)
    for layout in ("ffpp", "celebdf", "dfdc"):
        write_manifest(_rows(layout, tmp_path / layout), plan.manifest(layout))
    picked = held_out_videos(plan)
    assert len(picked) == 6
    for layout in ("ffpp", "celebdf", "dfdc"):
        mine = [p for p in picked if p.parent.parent.name == layout]
        assert sorted(p.name for p in mine) == ["0_0.mp4", "1_0.mp4"]
        assert all(p.parent.name == "test" for p in mine)


def test_missing_curriculum_weights_stop_the_demo_with_one_line(tmp_path):
    with pytest.raises(StepFailed, match="best.safetensors: missing"):
        collect_weights(DemoPlan(out=tmp_path, specialists=("cm",)), console=None)


def test_unknown_specialist_is_a_usage_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--specialists", "cm,xx"]) == 2
    assert "xx" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_every_step_and_reuses_finished_work(tmp_path):
    # The tiny curriculum of all five real specialists, end to end, on real synthetic videos.
    plan = DemoPlan(out=tmp_path / "demo", videos={"ffpp": 6, "celebdf": 5, "dfdc": 2},
                    seconds=1.0, frames=8, workers=1, train_overrides=("trainer.max_epochs=1",))
    summary = run_demo(plan)
    assert len(summary["reports"]) == 6
    for report in summary["reports"]:
        data = json.loads((tmp_path / "demo" / "reports" / report.split("/")[-2] / "report.json").read_text())
        assert data["verdict"] in ("real", "fake", "uncertain")
    assert (plan.weights / "panel.json").is_file() and (plan.out / "eval" / "metrics.json").is_file()
    for spec in ("bg", "av", "cm", "rr", "tm"):
        side = json.loads((plan.weights / f"{spec}.json").read_text())
        assert side["specialist"] == spec and side["stage"] == "dfdc" and side["parent_sha256"]
    stamp = (plan.runs / "cm" / "dfdc" / "best.safetensors").stat().st_mtime
    again = run_demo(plan)  # a re-run reuses synth, extract and training
    assert (plan.runs / "cm" / "dfdc" / "best.safetensors").stat().st_mtime == stamp
    assert again["steps_s"]["4/7 train: tiny curriculum FF++ -> Celeb-DF -> DFDC for each specialist"] < \
        summary["steps_s"]["4/7 train: tiny curriculum FF++ -> Celeb-DF -> DFDC for each specialist"]


def test_demo_mixes_pseudofakes_into_the_specialists_it_helps(tmp_path, monkeypatch):
    import dfpanel.demo as demo
    from dfpanel.errors import DfpanelError

    calls = []
    monkeypatch.setattr(demo, "_run", lambda console, argv, ok_codes=(0,): calls.append(argv))
    monkeypatch.setattr(demo, "collect_weights", lambda plan, console: None)
    with pytest.raises(DfpanelError):  # the panel step needs the manifests the mocked commands never wrote
        demo.run_demo(DemoPlan(out=tmp_path))
    trains = {a[a.index("--specialist") + 1]: a for a in calls if a[0] == "curriculum"}
    assert set(trains) == set(demo.SPECIALISTS)
    for spec, argv in trains.items():
        assert ("pseudofakes.mode=mix" in argv) == (spec in demo.MIX_PSEUDOFAKES), spec
