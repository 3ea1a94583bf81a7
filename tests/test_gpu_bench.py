"""benchmarks/gpu.py: without a GPU it says so and measures nothing; `--smoke` runs every step at tiny
sizes on the CPU (slow: it trains five specialists twice through Lightning and extracts twice)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU exit")
def test_without_a_gpu_it_says_so_and_measures_nothing(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--out", str(tmp_path / "gpu.json")]) == 0
    assert "no CUDA GPU found" in capsys.readouterr().out and not (tmp_path / "gpu.json").exists()


@pytest.mark.slow
def test_smoke_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and report["device"] == "cpu" and report["precision"] == "32"
    ext = report["extract"]
    assert ext["cpu"]["ok"] == ext["gpu"]["ok"] == 6 and ext["gpu"]["detect_batch"] == 8
    assert ext["gpu"]["detector"]["frames"] > 0 and ext["cpu"]["detector"] is None  # the batched path ran
    assert ext["videos_per_s_vs_cpu"] > 0
    assert sorted(report["train"]) == ["av", "bg", "cm", "rr", "tm"]
    for fig in report["train"].values():
        assert fig["pipeline_vs_bare"] > 0 and fig["loader_vs_bare"] > 0 and fig["precision"] == "32-true"
    det = report["detect"]
    assert det["gpu"]["warm_s"] > 0 and det["cpu"]["warm_s"] > 0 and det["speedup_vs_cpu"] > 0
    for step in ("extract:", "train bg:", "train tm:", "detect:"):
        assert step in proc.stdout
