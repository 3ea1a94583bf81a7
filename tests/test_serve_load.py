"""benchmarks/serve_load.py --smoke: a real `dfpanel serve` (tiny random-init specialists, real videos)
under concurrent uploads and paced status polls; every job answered, none lost, none mixed up."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


@pytest.mark.slow
def test_smoke_every_job_answered_none_lost_none_mixed_up(tmp_path):
    spec = importlib.util.spec_from_file_location("serve_load_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--smoke", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "serve_load_smoke.json").read_text())["checks"] == result["checks"]
    assert result["ok"], (result["checks"], result["errors"], result["lost_names"], result["mixed_up_detail"])
    assert result["unanswered"] == 0 and result["lost"] == 0 and result["mixed_up"] == 0
    load = result["load"]
    assert load["jobs_done"] == 4 and load["codes"]["upload 202"] == 4
    assert load["status"]["n"] > 0 and load["page"]["n"] > 0 and result["server_5xx"] == {}
    assert result["memory_mb"]["peak"] >= result["memory_mb"]["after_start"] > 0
