"""The issue's promise, end to end: a folder of real videos alone (no fake/) trains a specialist with
pseudo-fakes through the CLI, and the weights it writes say so in their sidecar."""

from __future__ import annotations

import json
import shutil

from dfpanel.cli import main


def test_a_folder_of_real_videos_trains_a_specialist_from_pseudofakes(tmp_path):
    data = tmp_path / "videos"
    assert main(["synth", "--layout", "folder", "--out", str(data), "--videos", "4", "--seconds", "0.6",
                 "--size", "160x120", "--seed", "3"]) == 0
    shutil.rmtree(data / "fake")  # what a user with only their own footage has
    manifest = tmp_path / "real.jsonl"
    assert main(["index", str(data), "--out", str(manifest)]) == 0
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    assert rows and {r["label"] for r in rows} == {0}
    # One split per person may leave val empty on 4 people: give training and validation two each.
    for i, r in enumerate(rows):
        r["split"] = "train" if i % 2 == 0 else "val"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    assert main(["extract", str(manifest), "--out", str(cache), "--frames", "4", "--workers", "1", "--no-progress"]) == 0
    out = tmp_path / "run"
    assert main(["train", "--config", "cm/tiny_real_only", "--data", str(cache), "--manifest", str(manifest),
                 "--out", str(out), "--quiet", "--set", "trainer.max_epochs=1"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["n_train_pseudofakes"] == run["n_train_samples"] // 2 > 0  # every real sample has its twin
    assert run["n_val_pseudofakes"] > 0
    side = json.loads((out / "best.json").read_text())
    assert side["config"]["pseudofakes"]["mode"] == "only"
