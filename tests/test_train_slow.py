"""Longer training checks: a 3-stage curriculum and a 2-process DDP run on CPU (slow), and the CLI
commands end to end (a few seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from factories import cache_on_disk

from dfpanel.cli import main

FAKE = ["model.specialist=fakeframe", "trainer.max_epochs=1", "optim.lr=0.05"]


@pytest.fixture(scope="module")
def three_dataset_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    cache_on_disk(root, dataset="ffpp", counts={"train": (4, 4), "val": (2, 2)})
    cache_on_disk(root, dataset="celebdf", counts={"train": (4, 4), "val": (2, 2)})
    cache_on_disk(root, dataset="dfdc", chunks=2, counts={"train": (4, 4), "val": (2, 2)})
    return root


@pytest.mark.slow
def test_curriculum_chains_three_stages_and_skips_finished_ones(three_dataset_cache, tmp_path):
    from dfpanel.train.curriculum import run_curriculum

    out = tmp_path / "runs"
    results = run_curriculum("cm", cache=str(three_dataset_cache), out=out, preset="tiny",
                             overrides=[*FAKE, "carry_optimizer=true"], progress=False)
    assert [r["stage"] for r in results] == ["ffpp", "celebdf", "dfdc"]
    ffpp, celebdf, dfdc = (out / "cm" / s for s in ("ffpp", "celebdf", "dfdc"))
    assert json.loads((ffpp / "run.json").read_text())["parent_sha256"] is None
    assert json.loads((celebdf / "run.json").read_text())["parent_sha256"] == results[0]["sha256"]
    progress = json.loads((dfdc / "progress.json").read_text())
    assert sorted(progress["done"]) == [0, 1] and progress["losses"] is not None  # tiny dfdc: auto order
    first = progress["order"][0]
    assert json.loads((dfdc / f"chunk_{first}" / "run.json").read_text())["parent_sha256"] == results[1]["sha256"]
    side = json.loads((dfdc / "best.json").read_text())
    assert side["stage"] == "dfdc" and side["config"]["data"]["dataset"] == "dfdc"
    # each stage trained only on its own dataset
    assert json.loads((celebdf / "run.json").read_text())["config"]["data"]["dataset"] == "celebdf"

    mtime = (ffpp / "best.safetensors").stat().st_mtime_ns
    again = run_curriculum("cm", cache=str(three_dataset_cache), out=out, preset="tiny", overrides=FAKE, progress=False)
    assert [r["sha256"] for r in again] == [r["sha256"] for r in results]
    assert (ffpp / "best.safetensors").stat().st_mtime_ns == mtime  # finished stages are not redone


def test_cli_train_and_curriculum(three_dataset_cache, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", "cm/tiny_ffpp", "--data", str(three_dataset_cache), "--out", str(out),
                 "--quiet", "--set", "model.specialist=fakeframe", "trainer.max_steps=3"])  # bare key=value too
    assert code == 0 and (out / "best.safetensors").is_file()
    assert json.loads((out / "result.json").read_text())["global_step"] == 3
    assert main(["train", "--config", "cm/tiny_ffpp", "--data", str(three_dataset_cache), "--out", str(out),
                 "--quiet", "--set", "model.specialist=fakeframe"]) == 2
    assert "--resume" in capsys.readouterr().err
    code = main(["curriculum", "--specialist", "cm", "--stages", "ffpp,celebdf", "--preset", "tiny", "--quiet",
                 "--data", str(three_dataset_cache), "--out", str(tmp_path / "cur"), *[f"--set={s}" for s in FAKE]])
    assert code == 0
    assert (tmp_path / "cur" / "cm" / "celebdf" / "best.safetensors").is_file()
    assert main(["curriculum", "--specialist", "cm", "--stages", "ffpp,wild", "--data", str(tmp_path),
                 "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(three_dataset_cache, tmp_path):
    """The real CM specialist, tiny preset, 2 CPU processes with gloo, through the CLI."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dfpanel", "train", "--config", "cm/tiny_ffpp", "--data", str(three_dataset_cache),
           "--out", str(out), "--devices", "2", "--quiet", "--set", "trainer.accelerator=cpu",
           "trainer.max_epochs=1", "data.batch_size=4"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2
    assert (out / "best.safetensors").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    # half the batches per process: 8 videos x 4 frames / batch 4 / 2 ranks
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == result["global_step"] == 4
